// The `whisper` channel: written words between a supervisor and the expert of a call,
// which the kiosk never receives. Each message is sent `to` one participant.
//
// Markup: a log element and a form with an input; `peer()` says whom a new message
// goes to (the expert for a supervisor; the supervisor who last wrote, for an expert).

import { h } from "/static/dom.js";

export class Whisper {
  constructor({ signaling, call, log, form, tr, nameOf, peer, onMessage = () => {} }) {
    Object.assign(this, { signaling, call, log, form, tr, nameOf, peer, onMessage });
    this.input = form.querySelector("input, textarea");
    this.error = form.querySelector("[data-role=whisper-error]");
    this.lastSender = null;
    this.log.replaceChildren();
    this.input.value = "";
    this.unsubscribe = [signaling.on("call.data", (message) => this.received(message))];
    this.onSubmit = (event) => {
      event.preventDefault();
      this.send();
    };
    form.addEventListener("submit", this.onSubmit);
  }

  received(message) {
    if (message.call !== this.call || message.channel !== "whisper") return;
    const text = message.data && message.data.text;
    if (typeof text !== "string") return;
    this.lastSender = message.sender;
    this.append(message.sender, text, false);
    this.onMessage(message.sender);
  }

  async send() {
    const text = this.input.value.trim();
    const to = this.peer(this.lastSender);
    if (!text) return;
    if (!to) {
      this.showError(this.tr.t("whisper.nobody"));
      return;
    }
    try {
      await this.signaling.request("call.data", { call: this.call, channel: "whisper", data: { text }, to });
    } catch (error) {
      this.showError(this.tr.t("whisper.failed", { code: error.code || error.message }));
      return;
    }
    this.showError("");
    this.input.value = "";
    this.append(to, text, true);
  }

  append(key, text, mine) {
    const who = mine ? this.tr.t("whisper.to", { name: this.nameOf(key) }) : this.nameOf(key);
    this.log.append(
      h(
        "p",
        { class: `whisper-line${mine ? " is-mine" : ""}`, "data-sender": mine ? "me" : key },
        h("span", { class: "whisper-name" }, who),
        h("span", { class: "whisper-text" }, text),
      ),
    );
    this.log.scrollTop = this.log.scrollHeight;
  }

  showError(text) {
    if (this.error) this.error.textContent = text;
  }

  close() {
    this.unsubscribe.forEach((off) => off());
    this.form.removeEventListener("submit", this.onSubmit);
    this.log.replaceChildren();
    this.input.value = "";
    this.showError("");
  }
}
