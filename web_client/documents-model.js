// What the console and the kiosk both know of a call's documents and device
// commands: keys, how far a command has gone, and the case file as a list.
//
// Rules this module keeps:
// 1. A command's key is made once, when the expert asks, and sent again as it is on
//    a retry: the server runs a key once. A command that failed on the device is
//    asked again under a new key.
// 2. `device.progress` only moves a command forward: a late message about an
//    earlier state (or about a command already finished) changes nothing.
// 3. The case file is keyed by document id; a `case.document` replaces the
//    document it names, a `case.file` replaces the whole list.

const FINISHED_STATES = new Set(["done", "failed", "cancelled", "timed_out", "undeliverable"]);

// The order in which a command's states follow each other (rule 2).
const STATE_ORDER = ["sent", "queued", "scanning", "waiting_page", "uploading", "printing"];

// A key the server accepts (8-64 of [A-Za-z0-9_-]). randomUUID needs a secure
// context; a kiosk reached over plain http on a local network is not one.
export function newCommandKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function isFinished(state) {
  return FINISHED_STATES.has(state);
}

// Whether `next` may replace `current` (rule 2). Scanning and waiting for the next
// page alternate on a multi-page scan, so the page number decides between them.
export function moves(current, next) {
  if (!current) return true;
  if (isFinished(current.state)) return false;
  if (isFinished(next.state)) return true;
  const page = (next.page || 0) - (current.page || 0);
  if (page !== 0) return page > 0;
  return STATE_ORDER.indexOf(next.state) >= STATE_ORDER.indexOf(current.state);
}

// How much of a command is done, from 0 to 1, for a progress bar; null while
// nothing can be said (a bar with no value shows as "in progress").
export function progressFraction(command) {
  const { kind, state } = command;
  const page = command.page || 0;
  const pages = command.pages || 0;
  const ofPages = pages > 0 ? Math.min(1, page / pages) : null;
  switch (state) {
    case "sent": return 0.02;
    case "queued": return 0.08;
    case "scanning":
      if (ofPages !== null) return 0.1 + 0.55 * ofPages;
      return 0.3;
    case "waiting_page": return null;
    case "uploading": return 0.8;
    case "printing":
      if (ofPages !== null && kind === "print") return 0.2 + 0.75 * ofPages;
      return 0.5;
    case "done": return 1;
    default: return null;
  }
}

// The documents of a case file in the order they came (rule 3).
export class CaseDocuments {
  constructor() {
    this.byId = new Map();
  }

  replace(documents) {
    this.byId = new Map((documents || []).map((document) => [document.id, document]));
  }

  // Returns the document as it was before, or null when it is new.
  update(document) {
    const before = this.byId.get(document.id) || null;
    this.byId.set(document.id, document);
    return before;
  }

  get(id) {
    return this.byId.get(id) || null;
  }

  list() {
    return [...this.byId.values()]
      .filter((document) => document.state !== "purged")
      .sort((a, b) => (a.created_at || 0) - (b.created_at || 0));
  }

  clear() {
    this.byId.clear();
  }
}

// A document the printer can take: it has bytes, and was not turned down.
export function printable(document) {
  return !["requested", "scanned", "rejected", "purged"].includes(document.state);
}

// A document the expert may still accept or reject.
export function reviewable(document) {
  return document.state === "received" || document.state === "viewed";
}

// A kiosk's scanner or printer in words, with a level for its colour: unavailable
// (no agent, no such device, stopped, out of paper or toner), busy, warning (paper or
// toner low) or ready. The console's documents panel and the admin page say it alike.
export function devicePartWords(tr, health, name) {
  const part = health && health[name];
  if (!health || !health.online || !part || !part.present) {
    const why = !health ? "unknown" : !health.online ? "offline" : "absent";
    return { level: "unavailable", text: tr.t(`documents.device.${why}`) };
  }
  const words = [];
  let level = "ready";
  if (part.ready) words.push(tr.t("documents.device.ready"));
  else if (part.state === "processing") {
    words.push(tr.t("documents.device.busy"));
    level = "busy";
  } else {
    words.push(tr.t("documents.device.not_ready"));
    level = "unavailable";
  }
  for (const supply of ["media", "toner"]) {
    const value = part[supply];
    if (value === "low" || value === "empty") {
      words.push(tr.t(`documents.device.${supply}_${value}`));
      if (value === "empty") level = "unavailable";
      else if (level === "ready") level = "warning";
    }
  }
  if (part.detail) words.push(`(${part.detail})`);
  return { level, text: words.join(" — ") };
}
