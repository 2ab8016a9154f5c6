// Who is in the call, in words: the participants list, the notice that a supervisor
// is listening, and how a request for an interpreter goes.
//
// Rules this module keeps:
// 1. A participant is shown by name and role; the page's own participant is "you".
// 2. Anyone who listens without being seen (a supervisor) is always named on the
//    expert's screen, in a notice that cannot be missed.
// 3. The interpreter's progress (`call.interpreter`) is said in plain words, the same
//    on the kiosk and on the console; a request can be made again once the previous
//    one is over (unavailable, left, lost).

import { h } from "/static/dom.js";
import { nextOpeningText } from "/static/kiosk-wording.js";
import { partyKey, roleOfKey } from "/static/call-media.js";

const PENDING_STATES = new Set(["requesting", "queued", "offered"]);
const UNAVAILABLE_REASONS = new Set(["closed", "full", "no_expert", "timed_out", "cancelled"]);

export class CallPeople {
  // `list`: a <ul>; `supervisorNotice`: an element shown while a supervisor listens.
  // `noticeKey`: the words of that notice (the kiosk names nobody).
  constructor({ list, tr, supervisorNotice = null, noticeKey = "people.supervisor_listening" }) {
    Object.assign(this, { list, tr, supervisorNotice, noticeKey });
    this.you = null;
    this.participants = [];
  }

  update(participants, you) {
    this.participants = participants.map((party) => ({ ...party, key: partyKey(party) }));
    if (you) this.you = you;
    this.draw();
  }

  clear() {
    this.participants = [];
    this.you = null;
    this.draw();
  }

  party(key) {
    return this.participants.find((party) => party.key === key) || null;
  }

  byRole(role) {
    return this.participants.filter((party) => party.role === role);
  }

  roleWords(party) {
    const role = party.role || roleOfKey(party.key);
    if (role === "interpreter" && party.language) {
      return this.tr.t("role.interpreter_in", { language: this.tr.languageShort(party.language) });
    }
    return this.tr.t(`role.${role}`);
  }

  // For a tile: {name, role} in words (rule 1).
  describe(party, isSelf = false) {
    const self = isSelf || party.key === this.you;
    const name = self ? this.tr.t("people.you") : party.name || this.roleWords(party);
    return { name, role: this.roleWords(party) };
  }

  // For a line of text: the citizen is "the citizen", the others their name.
  nameOf(key) {
    if (key === this.you) return this.tr.t("people.you");
    const party = this.party(key) || { key, role: roleOfKey(key), name: "" };
    if (party.role === "kiosk") return this.tr.t("people.citizen");
    return party.name || this.roleWords(party);
  }

  draw() {
    this.list.replaceChildren(
      ...this.participants.map((party) => {
        const self = party.key === this.you;
        return h(
          "li",
          {
            class: `person${self ? " is-self" : ""}`,
            "data-participant": party.key,
            "data-role": party.role,
            "data-sends-media": String(party.sends_media !== false),
          },
          h("span", { class: "person-name" }, self ? this.tr.t("people.you") : party.name),
          h("span", { class: "person-role" }, this.roleWords(party)),
        );
      }),
    );
    if (this.supervisorNotice) {
      const listening = this.byRole("supervisor").filter((party) => party.key !== this.you);
      this.supervisorNotice.hidden = listening.length === 0;
      this.supervisorNotice.dataset.count = String(listening.length);
      this.supervisorNotice.textContent = listening.length
        ? this.tr.t(this.noticeKey, { names: listening.map((party) => party.name).join(", ") })
        : "";
    }
  }
}

// How the request for an interpreter goes (rule 3). `element` shows the sentence and
// carries the state in `data-state` (requesting | queued | offered | joined |
// unavailable | left | lost | failed, empty when nothing was asked).
export class InterpreterStatus {
  constructor({ element, tr, onChange = () => {} }) {
    Object.assign(this, { element, tr, onChange });
    this.status = null;
    this.drawElement();
  }

  reset() {
    this.status = null;
    this.draw();
  }

  get pending() {
    return this.status !== null && PENDING_STATES.has(this.status.state);
  }

  get present() {
    return this.status !== null && this.status.state === "joined";
  }

  requesting(language) {
    this.status = { state: "requesting", language };
    this.draw();
  }

  failed(language, error) {
    this.status = { state: "failed", language, code: error.code || "other" };
    this.draw();
  }

  update(message) {
    // Later messages may leave out the language the request was made in.
    const language = message.language || (this.status && this.status.language) || null;
    this.status = { ...message, language };
    this.draw();
  }

  sentence() {
    const status = this.status;
    if (!status) return "";
    const language = this.tr.languageName(status.language) || this.tr.t("interpreter.any_language");
    switch (status.state) {
      case "requesting":
        return this.tr.t("interpreter.requesting", { language });
      case "queued":
        return status.position
          ? this.tr.t("interpreter.queued_position", { language, position: status.position })
          : this.tr.t("interpreter.queued", { language });
      case "offered":
        return this.tr.t("interpreter.offered", { language });
      case "joined": {
        const name = (status.interpreter && status.interpreter.name) || "";
        return this.tr.t("interpreter.joined", { language, name });
      }
      case "unavailable": {
        const reason = UNAVAILABLE_REASONS.has(status.reason) ? status.reason : "other";
        const sentence = this.tr.t(`interpreter.unavailable.${reason}`, { language });
        if (reason === "closed" && status.next_opening) {
          return `${sentence} ${nextOpeningText(this.tr, status.next_opening)}.`;
        }
        return sentence;
      }
      case "left":
        return this.tr.t("interpreter.left", { language });
      case "lost":
        return this.tr.t("interpreter.lost", { language });
      case "failed":
        return this.tr.t("interpreter.failed", { language });
      default:
        return "";
    }
  }

  draw() {
    this.drawElement();
    this.onChange(this);
  }

  drawElement() {
    const state = this.status ? this.status.state : "";
    this.element.dataset.state = state;
    this.element.textContent = this.sentence();
    this.element.hidden = !state;
  }
}

export function requestInterpreter(signaling, call, language) {
  return signaling.request("call.invite", { call, role: "interpreter", language });
}
