// The citizen's side of remote scanning and printing: what to do at the scanner or
// the printer, said large and plain with a pictogram; how the adviser judged a
// document; and "tell us once", the consent to reuse accepted documents elsewhere
// through a code, and the code from an earlier visit.
//
// Rules this module keeps:
// 1. One prompt at a time: the command still running that moved last, else what
//    happened last (a command's end, a verdict), shown for a while and then gone.
// 2. The device's own words are not shown to the citizen: a known reason (a jam,
//    an empty tray...) becomes a plain sentence, any other a general one; the
//    adviser sees the device's words on the console.
// 3. The buttons of a multi-page scan answer the command that waits for a page,
//    once; they come back only when the device waits again.
// 4. Nothing of a visitor's documents or code stays after the call.
//
// Markup: the prompt (`#document-prompt`) and the share block (`#case-share`) of
// kiosk.html. A code is read (`typedShareCode`) and withdrawn (`withdrawShare`) the
// same way here and on the kiosk's own withdrawal screen, outside any call.

import { byId } from "/static/dom.js";
import { CaseDocuments, isFinished, moves, progressFraction } from "/static/documents-model.js";
import { PICTOGRAMS } from "/static/pictograms.js";

// How long the end of a command or a verdict stays on the screen.
const SHOWN_AFTER_END_MS = 25_000;
const PLAIN_REASONS = [
  ["jam", /jam|coinc/i],
  ["feeder_empty", /no.?doc|feeder.*(empty|no paper)|(empty|no paper).*feeder|out of documents/i],
  ["cover_open", /cover|door|lid/i],
  ["paper_empty", /media-empty|media-needed|out of paper|paper.*(empty|out)/i],
  ["ink_empty", /toner|ink|marker-supply/i],
  ["offline", /offline|unreachable|not found|no device|absent|disconnected|not connected/i],
];
// The refusals of a code the citizen can act on (check it, try again); any other is
// "other".
const SHARE_ERRORS = new Set(["unknown_share_code", "disconnected", "timeout"]);
// Shorter than this, what was typed is a slip, not a code worth asking about.
const SHORTEST_CODE = 4;

export function kioskDocumentsForCall(current, message, parts) {
  if (current && current.call === message.call) return current;
  if (current) current.close();
  return new KioskDocuments({ ...parts, call: message.call });
}

// A sharing code as the citizen typed it, written as the server keeps it: capitals,
// without the spaces and dashes people put between groups; null when too short to
// be one.
export function typedShareCode(typed) {
  const code = typed.replace(/[\s-]+/g, "").toUpperCase();
  return code.length >= SHORTEST_CODE ? code : null;
}

// Withdraw the consent behind `code`, in a call or not: "withdrawn", or why not
// (`unknown_share_code`, `disconnected`, `timeout`, `other`). Withdrawing a code
// already withdrawn is a success: trying again after a lost reply is safe.
export async function withdrawShare(signaling, code) {
  try {
    await signaling.request("case.withdraw", { code });
    return "withdrawn";
  } catch (error) {
    return SHARE_ERRORS.has(error.code) ? error.code : "other";
  }
}

export function plainReason(reason) {
  const found = PLAIN_REASONS.find(([, pattern]) => pattern.test(reason || ""));
  return found ? found[0] : "other";
}

function kioskElements() {
  const ids = [
    "document-prompt", "document-prompt-picto", "document-prompt-title", "document-prompt-text",
    "document-progress", "document-page-buttons", "page-more", "page-done",
    "share-buttons", "case-share", "consent-button", "consent-given", "share-code", "share-code-spoken", "withdraw-button",
    "have-code-button", "share-form", "share-input", "share-cancel", "share-error", "share-notice",
  ];
  return Object.fromEntries(ids.map((id) => [id, byId(id)]));
}

export class KioskDocuments {
  // `say(text)`: the page's announcement to screen readers.
  constructor({ signaling, call, tr, say, elements = kioskElements() }) {
    Object.assign(this, { signaling, call, tr, say, elements });
    this.commands = new Map();
    this.event = null;
    this.documents = new CaseDocuments();
    this.consent = false;
    this.code = "";
    this.entering = false;
    this.shareError = null;
    this.shareNotice = null;
    // The waiting page already answered ("<key>:<page>"), rule 3.
    this.answered = null;
    this.hideTimer = null;
    this.closed = false;
    this.unsubscribe = [
      signaling.on("device.progress", (message) => this.progressed(message)),
      signaling.on("case.document", (message) => this.documentChanged(message)),
      signaling.on("case.file", (message) => this.fileReceived(message)),
    ];
    this.listeners = [];
    const el = elements;
    this.listen(el["page-more"], "click", () => this.answerPage(true));
    this.listen(el["page-done"], "click", () => this.answerPage(false));
    this.listen(el["consent-button"], "click", () => this.giveConsent());
    this.listen(el["withdraw-button"], "click", () => this.withdraw());
    this.listen(el["have-code-button"], "click", () => this.enterCode(true));
    this.listen(el["share-cancel"], "click", () => this.enterCode(false));
    this.listen(el["share-form"], "submit", (event) => {
      event.preventDefault();
      this.share();
    });
    this.listen(el["share-input"], "input", () => {
      this.shareError = null;
      this.drawShare();
    });
    el["share-buttons"].hidden = false;
    this.draw();
  }

  listen(element, type, handler) {
    element.addEventListener(type, handler);
    this.listeners.push(() => element.removeEventListener(type, handler));
  }

  // ------------------------------------------------------------------ server events

  progressed(message) {
    if (this.closed || message.call !== this.call) return;
    const known = this.commands.get(message.key);
    if (!moves(known, message)) return;
    const command = { ...message, kind: message.kind || (known && known.kind) || "scan", at: performance.now() };
    this.commands.set(message.key, command);
    if (isFinished(command.state)) this.remember({ type: "command", command });
    this.draw();
    this.say(this.promptWords().title);
  }

  documentChanged(message) {
    if (this.closed || message.call !== this.call) return;
    const document = message.document;
    const before = this.documents.update(document);
    const judged = (document.state === "accepted" || document.state === "rejected") && (!before || before.state !== document.state);
    if (judged && document.origin !== "shared") {
      this.remember({ type: "verdict", document });
      this.say(`${this.promptWords().title} ${this.promptWords().text}`);
    }
    this.draw();
  }

  fileReceived(message) {
    if (this.closed || message.call !== this.call) return;
    this.documents.replace(message.documents);
    this.consent = Boolean(message.consent);
    this.code = message.share_code || "";
    this.draw();
  }

  // Rule 1: an end or a verdict shows for a while.
  remember(event) {
    this.event = { ...event, at: performance.now() };
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => {
      this.event = null;
      this.draw();
    }, SHOWN_AFTER_END_MS);
  }

  // ------------------------------------------------------------------ the citizen's answers

  // Rule 3.
  async answerPage(more) {
    const waiting = this.waitingCommand();
    if (!waiting || this.answered === pageOf(waiting)) return;
    this.answered = pageOf(waiting);
    this.draw();
    try {
      await this.signaling.request("device.page", { call: this.call, key: waiting.key, more });
    } catch (error) {
      console.warn("device.page refused", error);
      this.answered = null;
      this.draw();
    }
  }

  async giveConsent() {
    try {
      const reply = await this.signaling.request("case.consent", { call: this.call, share: true });
      this.consent = Boolean(reply.share);
      this.code = reply.code || "";
      this.shareNotice = null;
      this.draw();
      if (this.code) this.say(this.tr.t("documents_kiosk.code_said", { code: spelled(this.code) }));
    } catch (error) {
      this.shareNotice = "consent_failed";
      this.draw();
    }
  }

  async withdraw() {
    const code = this.code;
    if (!code) return;
    if ((await withdrawShare(this.signaling, code)) !== "withdrawn") {
      this.shareNotice = "withdraw_failed";
      this.draw();
      return;
    }
    this.consent = false;
    this.code = "";
    this.shareNotice = "withdrawn";
    this.draw();
    this.say(this.tr.t("documents_kiosk.withdrawn"));
  }

  enterCode(open) {
    this.entering = open;
    this.shareError = null;
    this.elements["share-input"].value = "";
    this.draw();
    (open ? this.elements["share-input"] : this.elements["have-code-button"]).focus();
  }

  async share() {
    const input = this.elements["share-input"];
    const code = typedShareCode(input.value);
    if (!code) {
      this.shareError = "unknown_share_code";
      this.draw();
      input.focus();
      return;
    }
    try {
      await this.signaling.request("case.share", { call: this.call, code });
    } catch (error) {
      this.shareError = SHARE_ERRORS.has(error.code) ? error.code : "other";
      this.draw();
      input.focus();
      return;
    }
    this.entering = false;
    this.shareNotice = "shared";
    input.value = "";
    this.draw();
    this.elements["have-code-button"].focus();
    this.say(this.tr.t("documents_kiosk.shared"));
  }

  // ------------------------------------------------------------------ drawing

  waitingCommand() {
    return [...this.commands.values()].find((command) => command.state === "waiting_page") || null;
  }

  // Rule 1: the running command that moved last, else the last end or verdict.
  shown() {
    const running = [...this.commands.values()].filter((command) => !isFinished(command.state));
    if (running.length) {
      const last = running.reduce((a, b) => (b.at >= a.at ? b : a));
      if (!this.event || this.event.at < last.at) return { type: "command", command: last };
    }
    return this.event;
  }

  // {picto, title, text, progress (0..1, null: moving, undefined: no bar), pages}
  promptWords() {
    const tr = this.tr;
    const words = (name, params = {}) => ({
      title: tr.t(`documents_kiosk.${name}.title`, params),
      text: tr.t(`documents_kiosk.${name}.text`, params),
    });
    const shown = this.shown();
    if (!shown) return null;
    if (shown.type === "verdict") {
      const document = shown.document;
      if (document.state === "accepted") return { picto: "check", ...words("accepted") };
      const illegible = tr.t("documents.reason.illegible");
      if ((document.reason || "").startsWith(illegible)) return { picto: "warning", ...words("rejected_illegible") };
      return { picto: "warning", ...words("rejected", { reason: document.reason || "" }) };
    }
    const command = shown.command;
    const progress = progressFraction(command);
    const page = command.page || 1;
    if (command.kind === "print") {
      switch (command.state) {
        case "done": return { picto: "printer", ...words("print_done") };
        case "failed": return { picto: "warning", ...this.failure("print_failed", command) };
        case "cancelled": return { picto: "printer", ...words("print_cancelled") };
        case "timed_out": case "undeliverable": return { picto: "warning", ...words("no_answer") };
        default: return { picto: "printer", progress, ...words("printing") };
      }
    }
    switch (command.state) {
      case "scanning": return { picto: "scanner", progress, ...words("scanning", { page }) };
      case "waiting_page": return { picto: "add_page", pages: true, ...words("next_page", { page: command.page || 1 }) };
      case "uploading": return { picto: "scanner", progress, ...words("uploading") };
      case "done": return { picto: "check", ...words("scan_done") };
      case "failed": return { picto: "warning", ...this.failure("scan_failed", command) };
      case "cancelled": return { picto: "scanner", ...words("scan_cancelled") };
      case "timed_out": case "undeliverable": return { picto: "warning", ...words("no_answer") };
      default: return { picto: "scanner", progress, ...words("place") };
    }
  }

  // Rule 2.
  failure(name, command) {
    const tr = this.tr;
    const why = tr.t(`documents_kiosk.reason.${plainReason(command.reason)}`);
    return {
      title: tr.t(`documents_kiosk.${name}.title`),
      text: `${why} ${tr.t("documents_kiosk.ask_adviser")}`,
    };
  }

  draw() {
    if (this.closed) return;
    this.drawPrompt();
    this.drawShare();
  }

  redraw() {
    this.draw();
  }

  drawPrompt() {
    const el = this.elements;
    const prompt = this.promptWords();
    el["document-prompt"].hidden = !prompt;
    if (!prompt) {
      delete el["document-prompt"].dataset.state;
      return;
    }
    const shown = this.shown();
    el["document-prompt"].dataset.state = shown.type === "verdict" ? shown.document.state : shown.command.state;
    el["document-prompt"].dataset.kind = shown.type === "verdict" ? "verdict" : shown.command.kind;
    el["document-prompt-picto"].innerHTML = PICTOGRAMS[prompt.picto];
    el["document-prompt-title"].textContent = prompt.title;
    el["document-prompt-text"].textContent = prompt.text;
    const bar = el["document-progress"];
    bar.hidden = prompt.progress === undefined;
    if (prompt.progress === null || prompt.progress === undefined) bar.removeAttribute("value");
    else bar.value = prompt.progress;
    el["document-page-buttons"].hidden = !prompt.pages;
    const waiting = this.waitingCommand();
    for (const id of ["page-more", "page-done"]) {
      el[id].setAttribute("aria-disabled", String(this.answered === pageOf(waiting)));
    }
  }

  drawShare() {
    const el = this.elements;
    const tr = this.tr;
    // Accepted documents of this call (exported ones were accepted first).
    const accepted = this.documents.list().some(
      (document) => ["accepted", "exported"].includes(document.state) && document.origin !== "shared",
    );
    const given = this.consent && Boolean(this.code);
    el["consent-button"].hidden = given || !accepted;
    el["consent-given"].hidden = !given;
    el["share-code"].textContent = this.code;
    el["share-code-spoken"].textContent = spelled(this.code);
    el["have-code-button"].hidden = this.entering;
    el["share-form"].hidden = !this.entering;
    el["share-error"].textContent = this.shareError ? tr.t(`documents_kiosk.share_error.${this.shareError}`) : "";
    el["share-notice"].textContent = this.shareNotice ? tr.t(`documents_kiosk.${this.shareNotice}`) : "";
    el["share-notice"].hidden = !this.shareNotice;
    el["case-share"].hidden = !given && !this.entering && !this.shareNotice;
  }

  // ------------------------------------------------------------------ closing

  // Rule 4.
  close() {
    this.closed = true;
    clearTimeout(this.hideTimer);
    this.unsubscribe.forEach((off) => off());
    this.listeners.forEach((off) => off());
    const el = this.elements;
    el["document-prompt"].hidden = true;
    el["case-share"].hidden = true;
    el["share-buttons"].hidden = true;
    el["share-code"].textContent = "";
    el["share-code-spoken"].textContent = "";
    el["share-input"].value = "";
    el["share-error"].textContent = "";
    el["share-notice"].textContent = "";
    el["share-form"].hidden = true;
    el["consent-given"].hidden = true;
    el["consent-button"].hidden = true;
    el["have-code-button"].hidden = false;
  }
}

function pageOf(command) {
  return command ? `${command.key}:${command.page || 0}` : null;
}

// A code read out one character at a time ("K 7 M 2..."): a screen reader would
// otherwise try to pronounce it as a word.
function spelled(code) {
  return code.split("").join(" ");
}
