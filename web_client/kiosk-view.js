// Drawing of the kiosk's screens from the kiosk's model. Every function can be
// called again at any time (after a language switch, for instance) and draws
// the same thing for the same model.

import { byId, h } from "/static/dom.js";
import { PICTOGRAMS, servicePictogram } from "/static/pictograms.js";
import { nextOpeningText, positionText, waitRangeText } from "/static/kiosk-wording.js";
import { isOpenNow } from "/static/service-hours.js";

const KEYPAD_DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];

export function drawPictograms() {
  const placements = {
    "brand-picto": PICTOGRAMS.desk,
    "language-picto": PICTOGRAMS.language,
    "call-picto": PICTOGRAMS.phone,
    "back-picto": PICTOGRAMS.back,
    "cancel-picto": PICTOGRAMS.exit,
    "hangup-picto": PICTOGRAMS.hangup,
    "rtt-picto": PICTOGRAMS.text,
    "rtt-send-picto": PICTOGRAMS.send,
    "interpreter-picto": PICTOGRAMS.interpreter,
    "ended-picto": PICTOGRAMS.check,
    "home-picto": PICTOGRAMS.home,
    "page-more-picto": PICTOGRAMS.add_page,
    "page-done-picto": PICTOGRAMS.check,
    "consent-picto": PICTOGRAMS.share,
    "have-code-picto": PICTOGRAMS.code,
    "withdraw-open-picto": PICTOGRAMS.code,
    "withdraw-picto": PICTOGRAMS.share,
    "withdraw-submit-picto": PICTOGRAMS.check,
    "withdraw-back-picto": PICTOGRAMS.back,
    "withdrawn-picto": PICTOGRAMS.check,
    "withdrawn-home-picto": PICTOGRAMS.home,
  };
  for (const [id, picto] of Object.entries(placements)) byId(id).innerHTML = picto;
}

// `notice` is a function of the translator so that it follows a language switch.
function drawNotice(element, tr, notice) {
  element.textContent = notice ? notice(tr) : "";
  element.hidden = !notice;
}

// A service seen open at the welcome that has closed since has no known next
// opening until the server says it.
export function openingAfter(service) {
  return service.open ? null : service.next_opening;
}

export function drawHome(tr, model, onPick) {
  byId("home-loading").hidden = model.services !== null;
  drawNotice(byId("home-notice"), tr, model.homeNotice);
  const list = byId("service-list");
  const services = model.services || [];
  // Redrawing must not take the keyboard focus away from the service it is on.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
  list.replaceChildren(
    ...services.map((service) => {
      const open = isOpenNow(service);
      const state = open ? tr.t("home.open") : nextOpeningText(tr, openingAfter(service), service.timezone);
      const button = h(
        "button",
        {
          type: "button",
          class: `service-button ${open ? "is-open" : "is-closed"}`,
          "data-testid": `service-${service.id}`,
          "aria-disabled": open ? null : "true",
          onclick: () => onPick(service),
        },
        h("span", { class: "service-picto", html: servicePictogram(service) }),
        h("span", { class: "service-name" }, service.name),
        service.partner && service.partner !== service.name
          ? h("span", { class: "service-partner" }, service.partner)
          : null,
        h("span", { class: "service-state" }, state),
      );
      return h("li", {}, button);
    }),
  );
  if (model.services && services.length === 0) {
    list.replaceChildren(h("li", { class: "notice" }, tr.t("home.no_service")));
  }
  if (focused) list.querySelector(`[data-testid="${focused}"]`)?.focus();
}

export function buildKeypad(tr, onKey) {
  const key = (label, value, attributes = {}) =>
    h("button", { type: "button", class: "key", tabindex: "-1", onclick: () => onKey(value), ...attributes }, label);
  byId("keypad").replaceChildren(
    ...KEYPAD_DIGITS.map((digit) => key(digit, digit)),
    key(tr.t("number.clear"), "clear", { class: "key key-word", "data-i18n": "number.clear" }),
    key("0", "0"),
    key("", "erase", {
      class: "key key-erase",
      html: PICTOGRAMS.erase,
      "aria-label": tr.t("number.erase"),
      "data-i18n-attr": "aria-label:number.erase",
    }),
  );
}

export function drawNumber(tr, model) {
  const service = model.service;
  byId("number-title").replaceChildren(
    h("span", { html: servicePictogram(service) }),
    h("span", {}, service.name),
  );
  byId("beneficiary-label").textContent = service.beneficiary_label || tr.t("number.label_default");
  const hints = [service.beneficiary_hint];
  if (!service.beneficiary_pattern) hints.push(tr.t("number.optional"));
  byId("beneficiary-hint").textContent = hints.filter(Boolean).join(" ");
  byId("interpreter-field").hidden = !service.interpreter;
  drawNotice(byId("number-error"), tr, model.numberError);
  const callButton = byId("call-button");
  callButton.setAttribute("aria-disabled", model.requesting ? "true" : "false");
  byId("call-label").textContent = tr.t(model.requesting ? "number.calling" : "number.call");
}

export function drawWaiting(tr, model) {
  byId("waiting-service").textContent = tr.t("waiting.service", { service: model.service.name });
  byId("position").textContent = model.offered
    ? tr.t("waiting.offered")
    : positionText(tr, model.position);
  byId("wait-range").textContent = waitRangeText(tr, model.waitMin, model.waitMax);
  byId("wait-range").hidden = model.offered;
  drawNotice(byId("waiting-notice"), tr, model.waitingNotice);
}

export function waitingAnnouncement(tr, model) {
  if (model.offered) return tr.t("waiting.offered");
  return `${positionText(tr, model.position)}. ${waitRangeText(tr, model.waitMin, model.waitMax)}.`;
}

export function drawInCall(tr, model) {
  const peer = model.peer;
  const who = peer ? [peer.name, model.service && model.service.name].filter(Boolean).join(", ") : "";
  byId("call-peer").textContent = who ? tr.t("call.with", { name: who }) : "";
  byId("call-status").textContent = model.callStatus ? tr.t(model.callStatus) : "";
}

// The withdrawal of a sharing agreement: what went wrong is said by the field, and
// the button says when the request is on its way.
export function drawWithdraw(tr, model) {
  const error = model.withdrawError;
  byId("withdraw-error").textContent = error ? tr.t(`withdraw.error.${error}`) : "";
  const badCode = error === "empty" || error === "unknown_share_code";
  byId("withdraw-input").setAttribute("aria-invalid", badCode ? "true" : "false");
  byId("withdraw-submit").setAttribute("aria-disabled", model.withdrawing ? "true" : "false");
  byId("withdraw-submit-label").textContent = tr.t(model.withdrawing ? "withdraw.sending" : "withdraw.submit");
}

export function drawWithdrawn(tr, model) {
  byId("withdrawn-countdown").textContent = tr.plural("ended.countdown", model.secondsLeft);
}

export function drawEnded(tr, model) {
  byId("ended-message").textContent = tr.t(`ended.${model.outcome}`);
  byId("ended-countdown").textContent = tr.plural("ended.countdown", model.secondsLeft);
}
