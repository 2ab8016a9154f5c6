// Real-time text (the call's `rtt` channel): what each participant types, shown to
// the others as it is typed, for deaf and hard-of-hearing citizens and for anyone
// the sound fails.
//
// Rules this module keeps:
// 1. Every keystroke sends the whole line so far (`{seq, text, final, line}`): a
//    correction is simply a new version of the line, and a lost message is repaired
//    by the next one. `seq` only grows, even across page reloads (it starts from the
//    clock), so a receiver drops anything older than what it has shown.
// 2. Enter, or a pause of PAUSE_FINAL_MS, finishes the line: it is sent with
//    `final: true` and the next keystroke starts a new line.
// 3. Finished lines go to the log, which is an `aria-live="polite"` region; the lines
//    being typed are drawn below it, outside the live region, so a screen reader reads
//    each sentence once instead of each letter.
//
// Markup: a log element, a "live" element after it, and optionally a form with an
// input (a supervisor reads but does not write).

import { h } from "/static/dom.js";

const PAUSE_FINAL_MS = 3_000;
const MAX_LINE = 500;

// The text panel for `message`'s call: `current` is kept when it is the same call (a
// call announced again keeps what was written), else a new one replaces it.
export function textForCall(current, message, you, parts) {
  if (current && current.call === message.call) {
    current.setYou(you);
    return current;
  }
  if (current) current.close();
  return new RealTimeText({ ...parts, call: message.call, you });
}

export class RealTimeText {
  // `nameOf(key)` gives the words for a participant; `you`, this page's key.
  constructor({ signaling, call, you, log, live, form = null, tr, nameOf }) {
    Object.assign(this, { signaling, call, you, log, live, form, tr, nameOf });
    this.input = form ? form.querySelector("input, textarea") : null;
    this.seq = Date.now();
    this.line = 0;
    this.pauseTimer = null;
    this.senders = new Map();
    this.closed = false;
    this.log.replaceChildren();
    this.live.replaceChildren();
    this.unsubscribe = [signaling.on("call.data", (message) => this.received(message))];
    if (this.input) {
      this.input.value = "";
      this.input.maxLength = MAX_LINE;
      this.onInput = () => this.typed();
      this.onKeydown = (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.finish();
        }
      };
      this.onSubmit = (event) => {
        event.preventDefault();
        this.finish();
        this.input.focus();
      };
      this.input.addEventListener("input", this.onInput);
      this.input.addEventListener("keydown", this.onKeydown);
      form.addEventListener("submit", this.onSubmit);
    }
  }

  // The participant's key is known once the call is announced.
  setYou(you) {
    this.you = you;
  }

  // ------------------------------------------------------------------ sending

  typed() {
    clearTimeout(this.pauseTimer);
    this.send(this.input.value, false);
    if (this.input.value.trim()) this.pauseTimer = setTimeout(() => this.finish(), PAUSE_FINAL_MS);
  }

  finish() {
    clearTimeout(this.pauseTimer);
    const text = this.input.value;
    if (!text.trim()) return;
    this.send(text, true);
    this.appendLine(this.you, this.line, text, true);
    this.line += 1;
    this.input.value = "";
  }

  send(text, final) {
    this.seq += 1;
    this.signaling.send("call.data", {
      call: this.call,
      channel: "rtt",
      data: { seq: this.seq, text: text.slice(0, MAX_LINE), final, line: this.line },
    });
  }

  // ------------------------------------------------------------------ receiving

  received(message) {
    if (this.closed || message.call !== this.call || message.channel !== "rtt") return;
    const key = message.sender;
    const data = message.data || {};
    if (!key || typeof data.text !== "string" || !Number.isFinite(data.seq)) return;
    const sender = this.senders.get(key) || { seq: -Infinity, line: null, element: null, text: "" };
    this.senders.set(key, sender);
    if (data.seq <= sender.seq) return;
    sender.seq = data.seq;
    // A new line while the previous one never got its `final`: keep what was seen.
    if (sender.element && sender.line !== data.line) this.settle(key, sender);
    sender.line = data.line;
    if (data.final) {
      sender.text = data.text;
      this.settle(key, sender);
      return;
    }
    sender.text = data.text;
    if (!sender.element) {
      sender.element = this.lineElement(key, data.line, false);
      sender.element.dataset.rttLive = key;
      this.live.append(sender.element);
    }
    sender.element.querySelector(".rtt-text").textContent = data.text;
    this.scroll();
  }

  // The sender's line being typed becomes a finished line of the log.
  settle(key, sender) {
    if (sender.element) sender.element.remove();
    sender.element = null;
    if (sender.text.trim()) this.appendLine(key, sender.line, sender.text, true);
    sender.text = "";
  }

  // Someone left: their half-typed line is kept as it stood.
  participantLeft(key) {
    const sender = this.senders.get(key);
    if (sender) this.settle(key, sender);
  }

  appendLine(key, line, text, final) {
    const element = this.lineElement(key, line, final);
    element.querySelector(".rtt-text").textContent = text;
    this.log.append(element);
    this.scroll();
  }

  lineElement(key, line, final) {
    const mine = key === this.you;
    return h(
      "p",
      {
        class: `rtt-line${mine ? " is-mine" : ""}${final ? "" : " is-live"}`,
        "data-sender": key,
        "data-line": String(line),
        "data-final": String(final),
      },
      h("span", { class: "rtt-name" }, this.nameOf(key)),
      h("span", { class: "rtt-text" }),
    );
  }

  // Names follow a language switch.
  redraw() {
    for (const element of [...this.log.children, ...this.live.children]) {
      element.querySelector(".rtt-name").textContent = this.nameOf(element.dataset.sender);
    }
  }

  scroll() {
    const box = this.log.parentElement;
    if (box) box.scrollTop = box.scrollHeight;
  }

  close() {
    this.closed = true;
    clearTimeout(this.pauseTimer);
    this.unsubscribe.forEach((off) => off());
    if (this.input) {
      this.input.removeEventListener("input", this.onInput);
      this.input.removeEventListener("keydown", this.onKeydown);
      this.form.removeEventListener("submit", this.onSubmit);
      this.input.value = "";
    }
    // Nothing of a conversation stays on a shared screen.
    this.log.replaceChildren();
    this.live.replaceChildren();
  }
}
