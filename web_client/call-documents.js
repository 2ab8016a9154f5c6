// The expert's Documents panel during a call: the kiosk's scanner and printer, scan
// and print commands with their progress, and the call's case file.
//
// Rules this module keeps:
// 1. Every command gets its key when the expert asks (documents-model.js rule 1). A
//    request that got no answer is sent again with the same key ("Try again"); a
//    command the device could not run is asked again under a new key ("Do it again").
// 2. A file of the expert's own is uploaded first (its own key, kept on retry, so a
//    retried upload is not stored twice), then printed like a case-file document.
// 3. The device's state is shown as the server last told it; until it says anything
//    the devices are shown as unavailable, and commands can still be tried: the
//    server answers `device_unavailable` if they cannot run.
// 4. Progress is written into the command's own line, in a polite live region: a
//    screen reader hears each step once.

import { byId, h } from "/static/dom.js";
import {
  CaseDocuments,
  devicePartWords,
  isFinished,
  moves,
  newCommandKey,
  printable,
  progressFraction,
} from "/static/documents-model.js";
import { uploadDocument } from "/static/documents-http.js";

const OWN_FILE = "__own_file__";
// Finished commands kept in sight, newest first.
const KEPT_FINISHED = 3;
const KNOWN_ERRORS = new Set([
  "device_unavailable", "not_in_call", "not_your_call", "unknown_document", "unknown_command",
  "invalid_command", "forbidden", "disconnected", "timeout", "too_large", "unsupported_type",
  "purged", "network", "length_required",
]);
const DOCUMENT_STATES = new Set([
  "requested", "scanned", "received", "viewed", "accepted", "rejected", "exported", "printed", "purged",
]);

// The panel for `message`'s call: kept when it is the same call (a call announced
// again after a reconnection keeps its commands), else replaced.
export function documentsForCall(current, message, parts) {
  if (current && current.call === message.call) return current;
  if (current) current.close();
  return new DocumentsPanel({ ...parts, call: message.call });
}

// The words of a document's state, for the list and the viewer.
export function documentStateText(tr, document) {
  const state = DOCUMENT_STATES.has(document.state) ? document.state : "received";
  if (state === "rejected" && document.reason) return tr.t("documents.state.rejected_because", { reason: document.reason });
  return tr.t(`documents.state.${state}`);
}

// The panel's markup in expert.html.
function panelElements() {
  return {
    deviceParts: byId("device-parts"),
    deviceError: byId("device-error"),
    scanForm: byId("scan-form"),
    scanSource: byId("scan-source"),
    scanColor: byId("scan-color"),
    scanResolution: byId("scan-resolution"),
    scanMultipage: byId("scan-multipage"),
    scanTitle: byId("scan-title"),
    scanButton: byId("scan-button"),
    printForm: byId("print-form"),
    printDocument: byId("print-document"),
    printFileField: byId("print-file-field"),
    printFile: byId("print-file"),
    printCopies: byId("print-copies"),
    printButton: byId("print-button"),
    error: byId("documents-error"),
    commands: byId("device-commands"),
    documentList: byId("case-documents"),
    documentsEmpty: byId("case-empty"),
    shareNote: byId("share-note"),
  };
}

export class DocumentsPanel {
  // `viewer`: a DocumentViewer; `getToken()`: the page's token for the HTTP routes;
  // `say(text)`: the page's announcement to screen readers.
  constructor({ signaling, call, tr, getToken, viewer, say, elements = panelElements() }) {
    Object.assign(this, { signaling, call, tr, getToken, elements, viewer, say });
    this.health = null;
    this.documents = new CaseDocuments();
    this.commands = new Map();
    this.shareCode = "";
    this.consent = false;
    this.closed = false;
    this.unsubscribe = [
      signaling.on("device.status", (message) => this.statusChanged(message)),
      signaling.on("device.progress", (message) => this.progressed(message)),
      signaling.on("case.file", (message) => this.fileReceived(message)),
      signaling.on("case.document", (message) => this.documentChanged(message)),
    ];
    this.listeners = [];
    this.listen(elements.scanForm, "submit", (event) => {
      event.preventDefault();
      this.scan();
    });
    this.listen(elements.printForm, "submit", (event) => {
      event.preventDefault();
      this.print();
    });
    this.listen(elements.printDocument, "change", () => {
      this.printChoiceMade = true;
      this.drawPrintFile();
    });
    this.printChoiceMade = false;
    this.elements.commands.replaceChildren();
    this.showError("");
    this.draw();
  }

  listen(element, type, handler) {
    element.addEventListener(type, handler);
    this.listeners.push(() => element.removeEventListener(type, handler));
  }

  explain(error) {
    if (error.code === "device_unavailable" && error.details && error.details.part) {
      return this.tr.t(`documents.error.device_unavailable_${error.details.part === "printer" ? "printer" : "scanner"}`);
    }
    return KNOWN_ERRORS.has(error.code) ? this.tr.t(`documents.error.${error.code}`) : error.message;
  }

  showError(text) {
    this.elements.error.textContent = text;
  }

  // ------------------------------------------------------------------ server events

  statusChanged(message) {
    if (this.closed || !message.health) return;
    this.health = message.health;
    this.drawDevices();
  }

  fileReceived(message) {
    if (this.closed || message.call !== this.call) return;
    this.documents.replace(message.documents);
    this.shareCode = message.share_code || "";
    this.consent = Boolean(message.consent);
    this.drawDocuments();
  }

  documentChanged(message) {
    if (this.closed || message.call !== this.call) return;
    const document = message.document;
    const before = this.documents.update(document);
    this.drawDocuments();
    this.viewer.update(document);
    const arrived = document.state === "received" && (!before || before.state !== "received");
    if (arrived) this.say(this.tr.t("documents.arrived", { title: this.titleOf(document) }));
  }

  progressed(message) {
    if (this.closed || message.call !== this.call) return;
    let command = this.commands.get(message.key);
    if (!command) {
      // A command of this call from before a reload of the console.
      command = { key: message.key, kind: message.kind || "scan", state: "sent", settings: null, copies: 1 };
      this.commands.set(command.key, command);
    }
    if (!moves(command, message)) return;
    Object.assign(command, {
      state: message.state,
      page: message.page || 0,
      pages: message.pages || 0,
      reason: message.reason || "",
      document: message.document || command.document || "",
      sendError: null,
    });
    if (message.kind) command.kind = message.kind;
    this.drawCommand(command);
  }

  // ------------------------------------------------------------------ commands

  scanSettings() {
    const { scanSource, scanColor, scanResolution, scanMultipage } = this.elements;
    return {
      source: scanSource.value,
      color: scanColor.value,
      resolution: Number(scanResolution.value),
      multipage: scanMultipage.checked,
    };
  }

  partUnavailable(part) {
    const health = this.health;
    return health !== null && (!health.online || !(health[part] && health[part].present));
  }

  scan() {
    if (this.partUnavailable("scanner")) {
      this.showError(this.tr.t("documents.error.device_unavailable_scanner"));
      return;
    }
    this.showError("");
    const title = this.elements.scanTitle.value.trim();
    this.issue({ kind: "scan", settings: this.scanSettings(), title });
    this.elements.scanTitle.value = "";
  }

  print() {
    if (this.partUnavailable("printer")) {
      this.showError(this.tr.t("documents.error.device_unavailable_printer"));
      return;
    }
    const copies = Math.min(9, Math.max(1, Number(this.elements.printCopies.value) || 1));
    const chosen = this.elements.printDocument.value;
    if (chosen === OWN_FILE) {
      const file = this.elements.printFile.files[0];
      if (!file) {
        this.showError(this.tr.t("documents.choose_file"));
        this.elements.printFile.focus();
        return;
      }
      this.showError("");
      this.issue({ kind: "print", file, uploadKey: newCommandKey(), copies, title: file.name });
      this.elements.printFile.value = "";
      return;
    }
    const document = this.documents.get(chosen);
    if (!document) {
      this.showError(this.tr.t("documents.choose_document"));
      this.elements.printDocument.focus();
      return;
    }
    this.showError("");
    this.issue({ kind: "print", document: document.id, copies, title: this.titleOf(document) });
  }

  // A new command under a new key (rule 1).
  issue(fields) {
    const command = {
      key: newCommandKey(),
      state: fields.file ? "upload" : "sent",
      page: 0,
      pages: 0,
      reason: "",
      document: "",
      settings: null,
      copies: 1,
      title: "",
      ...fields,
      sendError: null,
    };
    this.commands.set(command.key, command);
    this.drawCommand(command);
    this.send(command);
  }

  // Sends (or sends again, with the same keys) what the command still needs.
  async send(command) {
    const call = this.call;
    command.sendError = null;
    try {
      if (command.kind === "print" && command.file && !command.document) {
        command.state = "upload";
        this.drawCommand(command);
        const uploaded = await uploadDocument({ call, file: command.file, key: command.uploadKey, token: this.getToken() });
        command.document = uploaded.id;
        this.documents.update(uploaded);
        this.drawDocuments();
        command.state = "sent";
        this.drawCommand(command);
      }
      if (command.kind === "scan") {
        await this.signaling.request("device.scan", { call, key: command.key, settings: command.settings, title: command.title });
      } else {
        await this.signaling.request("device.print", { call, key: command.key, document: command.document, copies: command.copies });
      }
    } catch (error) {
      if (this.closed || call !== this.call) return;
      command.sendError = error;
      this.drawCommand(command);
    }
  }

  async cancel(command) {
    try {
      await this.signaling.request("device.cancel", { call: this.call, key: command.key });
    } catch (error) {
      this.showError(this.tr.t("documents.cancel_failed", { why: this.explain(error) }));
    }
  }

  again(command) {
    const { kind, settings, document, file, copies, title } = command;
    if (file && document) this.issue({ kind, document, copies, title });
    else if (file) this.issue({ kind, file, uploadKey: newCommandKey(), copies, title });
    else this.issue({ kind, settings, document, copies, title });
  }

  async review(document, verdict, reason) {
    await this.signaling.request("case.review", { call: this.call, document: document.id, verdict, reason }).catch((error) => {
      throw new Error(this.explain(error));
    });
  }

  // ------------------------------------------------------------------ drawing

  draw() {
    this.drawDevices();
    this.drawDocuments();
    for (const command of this.commands.values()) this.drawCommand(command);
  }

  redraw() {
    if (!this.closed) this.draw();
  }

  titleOf(document) {
    return document.title || this.tr.t("documents.untitled");
  }

  // Rule 3.
  partWords(name) {
    return devicePartWords(this.tr, this.health, name);
  }

  drawDevices() {
    const { deviceParts, deviceError, scanButton, printButton } = this.elements;
    deviceParts.replaceChildren(
      ...["scanner", "printer"].map((name) => {
        const { level, text } = this.partWords(name);
        return h(
          "li",
          { class: "device-part", "data-part": name, "data-level": level, "data-testid": `device-${name}` },
          h("span", { class: "device-dot", "aria-hidden": "true" }),
          h("span", { class: "device-name" }, this.tr.t(`documents.device.${name}`)),
          h("span", { class: "device-words" }, text),
        );
      }),
    );
    const lastError = this.health && this.health.last_error;
    deviceError.textContent = lastError ? this.tr.t("documents.device.last_error", { error: lastError }) : "";
    deviceError.hidden = !lastError;
    scanButton.setAttribute("aria-disabled", String(this.partUnavailable("scanner")));
    printButton.setAttribute("aria-disabled", String(this.partUnavailable("printer")));
  }

  drawDocuments() {
    const { documentList, documentsEmpty, shareNote } = this.elements;
    const documents = this.documents.list();
    documentList.replaceChildren(...documents.map((document) => this.documentItem(document)));
    documentsEmpty.hidden = documents.length > 0;
    shareNote.textContent = this.consent ? this.tr.t("documents.consent_given") : "";
    shareNote.hidden = !this.consent;
    this.fillPrintChoices(documents);
  }

  documentItem(document) {
    const tr = this.tr;
    const title = this.titleOf(document);
    const facts = [];
    if (document.pages) facts.push(tr.plural("documents.pages", document.pages));
    if (document.bytes) facts.push(sizeText(tr, document.bytes));
    if (document.origin === "shared") facts.push(tr.t("documents.shared_from", { partner: document.from_partner || "?" }));
    if (document.origin === "upload") facts.push(tr.t("documents.uploaded"));
    if (document.printed_copies) facts.push(tr.plural("documents.printed_copies", document.printed_copies));
    if (document.exported && document.state !== "exported") facts.push(tr.t("documents.state.exported"));
    const viewable = !["requested", "scanned", "purged"].includes(document.state);
    const open = h(
      "button",
      {
        type: "button",
        class: "button document-open",
        "data-testid": `open-${document.id}`,
        "aria-label": tr.t("documents.open_named", { title }),
        onclick: (event) => this.viewer.open(document, event.currentTarget),
      },
      tr.t("documents.open"),
    );
    return h(
      "li",
      { class: "document", "data-document": document.id, "data-state": document.state, "data-testid": `document-${document.id}` },
      h("span", { class: "document-title" }, title),
      h("span", { class: "document-state", "data-state": document.state }, documentStateText(tr, document)),
      facts.length ? h("span", { class: "document-facts" }, facts.join(" · ")) : null,
      viewable ? open : null,
    );
  }

  fillPrintChoices(documents) {
    const select = this.elements.printDocument;
    const chosen = select.value;
    const choices = documents.filter(printable);
    select.replaceChildren(
      ...choices.map((document) => h("option", { value: document.id }, this.titleOf(document))),
      h("option", { value: OWN_FILE }, this.tr.t("documents.own_file")),
    );
    // Until the expert picks, the newest document is offered.
    const kept = this.printChoiceMade && [...select.options].some((option) => option.value === chosen);
    select.value = kept ? chosen : choices.length ? choices[choices.length - 1].id : OWN_FILE;
    this.drawPrintFile();
  }

  drawPrintFile() {
    this.elements.printFileField.hidden = this.elements.printDocument.value !== OWN_FILE;
  }

  commandLabel(command) {
    const tr = this.tr;
    if (command.kind === "print") {
      const what = command.title || (command.document && this.documents.get(command.document)?.title) || tr.t("documents.untitled");
      return tr.plural("documents.command.print", command.copies || 1, { title: what });
    }
    const settings = command.settings;
    if (!settings) return tr.t("documents.command.scan_plain");
    return tr.t("documents.command.scan", {
      source: tr.t(`documents.scan.source_${settings.source}`).toLocaleLowerCase(tr.language),
      color: tr.t(`documents.scan.color_${settings.color}`).toLocaleLowerCase(tr.language),
      resolution: settings.resolution,
      pages: tr.t(settings.multipage ? "documents.command.several_pages" : "documents.command.one_page"),
    });
  }

  commandText(command) {
    const tr = this.tr;
    if (command.sendError) {
      const stage = command.state === "upload" ? "upload_failed" : "not_sent";
      return tr.t(`documents.progress.${stage}`, { why: this.explain(command.sendError) });
    }
    const { state, page, pages } = command;
    switch (state) {
      case "scanning":
        return page ? tr.t("documents.progress.scanning_page", { page }) : tr.t("documents.progress.scanning");
      case "waiting_page":
        return tr.t("documents.progress.waiting_page", { page });
      case "printing":
        return pages ? tr.t("documents.progress.printing_pages", { page, pages }) : tr.t("documents.progress.printing");
      case "done":
        return tr.t(`documents.progress.done_${command.kind === "print" ? "print" : "scan"}`);
      case "failed":
        return command.reason
          ? tr.t("documents.progress.failed_because", { reason: command.reason })
          : tr.t("documents.progress.failed");
      case "upload": case "sent": case "queued": case "uploading": case "cancelled":
      case "timed_out": case "undeliverable":
        return tr.t(`documents.progress.${state}`);
      default:
        return state;
    }
  }

  commandRow(command) {
    const id = `command-${command.key}`;
    const row = h(
      "li",
      { class: "command", id, "data-key": command.key, "data-testid": id },
      h("span", { class: "command-label", id: `${id}-label` }),
      h("progress", { class: "command-progress", max: "1", "aria-labelledby": `${id}-label` }),
      h("span", { class: "command-text", "data-testid": `${id}-text` }),
      h("span", { class: "command-actions" }),
    );
    this.elements.commands.prepend(row);
    return row;
  }

  // Rule 4: the line is drawn in place; only its words change.
  drawCommand(command) {
    if (this.closed) return;
    const row = this.elements.commands.querySelector(`[data-key="${CSS.escape(command.key)}"]`) || this.commandRow(command);
    const state = command.sendError ? "not_sent" : command.state;
    row.dataset.kind = command.kind;
    row.dataset.state = state;
    setText(row.querySelector(".command-label"), this.commandLabel(command));
    setText(row.querySelector(".command-text"), this.commandText(command));
    // A finished command says how it ended in words; its bar has nothing left to show.
    const bar = row.querySelector("progress");
    bar.hidden = Boolean(command.sendError) || isFinished(command.state);
    const fraction = progressFraction(command);
    if (fraction === null) bar.removeAttribute("value");
    else bar.value = fraction;
    row.querySelector(".command-actions").replaceChildren(...this.commandActions(command));
    this.trimCommands();
  }

  commandActions(command) {
    const tr = this.tr;
    const button = (word, testid, onclick) =>
      h("button", { type: "button", class: "button", "data-testid": `${testid}-${command.key}`, onclick }, tr.t(word));
    if (command.sendError) return [button("documents.try_again", "retry", () => this.send(command))];
    if (command.state === "upload") return [];
    if (!isFinished(command.state)) return [button("documents.cancel", "cancel", () => this.cancel(command))];
    if (command.state !== "done") return [button("documents.do_again", "again", () => this.again(command))];
    if (command.kind === "scan" && command.document && this.documents.get(command.document)) {
      const document = this.documents.get(command.document);
      return [button("documents.open", "open-result", (event) => this.viewer.open(document, event.currentTarget))];
    }
    return [];
  }

  trimCommands() {
    const finished = [...this.elements.commands.children].filter((row) => isFinished(row.dataset.state));
    for (const row of finished.slice(KEPT_FINISHED)) {
      this.commands.delete(row.dataset.key);
      row.remove();
    }
  }

  // ------------------------------------------------------------------ closing

  // Nothing of the citizen's documents stays on the console after the call.
  close() {
    this.closed = true;
    this.unsubscribe.forEach((off) => off());
    this.listeners.forEach((off) => off());
    this.viewer.close();
    this.documents.clear();
    this.commands.clear();
    this.elements.commands.replaceChildren();
    this.elements.documentList.replaceChildren();
    this.elements.printDocument.replaceChildren();
    this.elements.printFile.value = "";
    this.elements.scanTitle.value = "";
    this.showError("");
  }
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function sizeText(tr, bytes) {
  if (bytes < 1024 * 1024) return tr.t("documents.size_kb", { size: Math.max(1, Math.round(bytes / 1024)) });
  return tr.t("documents.size_mb", { size: (bytes / (1024 * 1024)).toFixed(1) });
}
