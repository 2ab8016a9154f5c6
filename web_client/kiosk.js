// The citizen's kiosk: pick a service, type a number, wait in the queue, talk; or,
// away from any call, withdraw a document-sharing agreement given at an earlier one.
//
// The kiosk is shared by strangers, so it always comes back to the French home
// screen with nothing of the previous visitor left on it: a screen where something
// is typed goes home when left alone, and a screen that only tells how something
// ended goes home after a few seconds.

import { PageShell } from "/static/shell.js";
import { MediaSlot, partyKey, roleOfKey } from "/static/call-media.js";
import { textForCall } from "/static/call-text.js";
import { CallPeople, InterpreterStatus, requestInterpreter } from "/static/call-people.js";
import { kioskDocumentsForCall, typedShareCode, withdrawShare } from "/static/kiosk-documents.js";
import { announce, byId, h, showScreen } from "/static/dom.js";
import { countdown } from "/static/format.js";
import { nextOpeningText } from "/static/kiosk-wording.js";
import { isOpenNow, markClosed } from "/static/service-hours.js";
import * as view from "/static/kiosk-view.js";

const DEFAULT_LANGUAGE = "fr";
const ENDED_SCREEN_S = 10;
const WITHDRAWN_SCREEN_S = 10;
// The screens where something is typed, and how long they wait for the next touch
// or key before going home.
const ENTRY_SCREENS = new Set(["number", "withdraw"]);
const ENTRY_IDLE_MS = 120_000;
// How often the home screen redraws, so services open and close on time.
const HOME_REFRESH_MS = 30_000;
// After a reconnection the server sends call.resumed at once if the call still
// exists; silence past this delay means the call is gone.
const RESUME_WAIT_MS = 5_000;
const ENDED_OUTCOMES = new Set(["answered", "timed_out", "no_expert", "closed", "full", "failed"]);
const REQUEST_ERRORS = new Set([
  "service_closed", "queue_full", "no_expert", "invalid_beneficiary", "call_in_progress",
  "service_not_offered", "service_unavailable", "disconnected",
]);
// Codes that mean the same thing to a visitor.
const REQUEST_ERROR_ALIASES = {
  unknown_service: "service_not_offered",
};

const shell = new PageShell({
  page: "kiosk",
  roles: ["kiosk"],
  state: "home",
  rememberLanguage: false,
  hooks: {
    welcome: welcomed,
    signedOut: () => {
      clearTimeout(resumeTimer);
      closeCall();
      setCall(null);
    },
    provisioned: () => go("home"),
    // The same token opened elsewhere holds the call now: free the camera here.
    replaced: () => closeCall(),
    redraw: () => {
      draw();
      people.draw();
      media.redraw();
      if (text) text.redraw();
      if (documents) documents.redraw();
      interpreter.draw();
    },
  },
});
const { signaling, tr, visio } = shell;
const people = new CallPeople({
  list: byId("people"),
  tr,
  supervisorNotice: byId("supervisor-notice"),
  noticeKey: "people.supervisor_listening_kiosk",
});
const interpreter = new InterpreterStatus({
  element: byId("interpreter-status"),
  tr,
  onChange: () => drawInterpreterPanel(),
});
const media = new MediaSlot({
  signaling,
  role: "kiosk",
  stage: byId("call-stage"),
  mainRoles: ["expert", "interpreter"],
  describe: (party, isSelf) => people.describe(party, isSelf),
  onStatus: (status) => {
    model.callStatus = `call.${status}`;
    if (visio.state === "in_call") view.drawInCall(tr, model);
  },
  // Only the kiosk's link with its expert decides whether the call can go on; a
  // failed link with an interpreter or a supervisor shows on its tile.
  onFailure: (key) => {
    if (roleOfKey(key) === "expert") reportMediaFailure();
  },
});
visio.useMedia(() => media.mesh);
// The real-time text of the current call.
let text = null;
// The scanner and printer prompts and the sharing of documents of the current call.
let documents = null;

const model = {
  services: null,
  service: null,
  homeNotice: null,
  numberError: null,
  requesting: false,
  call: null,
  position: 0,
  waitMin: null,
  waitMax: null,
  offered: false,
  waitingNotice: null,
  peer: null,
  callStatus: "",
  outcome: "answered",
  secondsLeft: ENDED_SCREEN_S,
  interpreterLanguages: [],
  choosingInterpreter: false,
  mediaFailureReported: false,
  withdrawError: null,
  withdrawing: false,
};

// The countdown of the screen shown (ended, withdrawn) back to the home screen.
let stopHomeCountdown = () => {};
// Each opening of the withdrawal screen, so that a late reply to an earlier one is
// not shown.
let withdrawVisit = 0;
let resumeTimer = null;
let idleTimer = null;

// ---------------------------------------------------------------------------
// Screens

function draw() {
  switch (visio.state) {
    case "home": view.drawHome(tr, model, pickService); break;
    case "number": view.drawNumber(tr, model); break;
    case "waiting": view.drawWaiting(tr, model); break;
    case "in_call": view.drawInCall(tr, model); break;
    case "ended": view.drawEnded(tr, model); break;
    case "withdraw": view.drawWithdraw(tr, model); break;
    case "withdrawn": view.drawWithdrawn(tr, model); break;
    default: break;
  }
}

function go(state, focusTarget) {
  if (visio.state === "number" && state !== "number") byId("beneficiary-input").value = "";
  if (visio.state === "withdraw" && state !== "withdraw") forgetWithdrawEntry();
  visio.state = state;
  draw();
  showScreen(state, focusTarget);
  watchIdleEntry();
}

function setCall(call) {
  model.call = call;
  visio.call = call;
}

async function goHome(notice = null) {
  stopHomeCountdown();
  closeCall();
  setCall(null);
  // The switch redraws the screen still shown, which may need its service.
  await shell.useLanguage(DEFAULT_LANGUAGE);
  model.service = null;
  model.homeNotice = notice;
  go("home");
}

// ---------------------------------------------------------------------------
// Home and number entry

function pickService(service) {
  if (!isOpenNow(service)) {
    model.homeNotice = (t) =>
      t.t("home.closed_notice", {
        service: service.name,
        opening: nextOpeningText(t, view.openingAfter(service), service.timezone),
      });
    view.drawHome(tr, model, pickService);
    announce(model.homeNotice(tr));
    return;
  }
  model.service = service;
  model.homeNotice = null;
  model.numberError = null;
  model.requesting = false;
  byId("interpreter-input").checked = false;
  go("number", byId("beneficiary-input"));
}

function pressKey(key) {
  const input = byId("beneficiary-input");
  if (key === "erase") input.value = input.value.slice(0, -1);
  else if (key === "clear") input.value = "";
  else if (input.value.length < input.maxLength) input.value += key;
  clearNumberError();
}

function clearNumberError() {
  if (!model.numberError) return;
  model.numberError = null;
  view.drawNumber(tr, model);
}

// The server decides with Python's fullmatch; anchoring the pattern gives the
// same answer here.
function acceptsBeneficiary(service, beneficiary) {
  if (!service.beneficiary_pattern) return true;
  try {
    return new RegExp(`^(?:${service.beneficiary_pattern})$`).test(beneficiary);
  } catch {
    return true;
  }
}

function showNumberError(notice) {
  model.numberError = notice;
  view.drawNumber(tr, model);
  byId("beneficiary-input").focus();
}

async function requestCall(event) {
  event.preventDefault();
  if (model.requesting) return;
  const service = model.service;
  // Written as the server stores it: no spaces, capital letters.
  const beneficiary = byId("beneficiary-input").value.replace(/\s+/g, "").toUpperCase();
  if (!acceptsBeneficiary(service, beneficiary)) {
    showNumberError((t) => [t.t("number.invalid"), service.beneficiary_hint].filter(Boolean).join(" "));
    return;
  }
  const request = { service: service.id, beneficiary };
  if (service.languages && service.languages.includes(tr.language)) request.language = tr.language;
  if (service.interpreter && byId("interpreter-input").checked) request.interpreter = true;
  model.requesting = true;
  view.drawNumber(tr, model);
  try {
    const queued = await signaling.request("call.request", request);
    model.requesting = false;
    enterQueue(queued, null);
  } catch (error) {
    model.requesting = false;
    if (error.code === "service_closed") markClosed(service, error.details.next_opening);
    showNumberError(requestErrorNotice(error));
  }
}

function requestErrorNotice(error) {
  const known = REQUEST_ERROR_ALIASES[error.code] || error.code;
  const code = REQUEST_ERRORS.has(known) ? known : "other";
  if (code === "service_closed") {
    const opening = error.details && error.details.next_opening;
    const timeZone = model.service ? model.service.timezone : undefined;
    return (t) => t.t("error.service_closed", { opening: nextOpeningText(t, opening, timeZone) });
  }
  return (t) => t.t(`error.${code}`);
}

// Leaving a screen unattended must not leave a beneficiary number or a sharing
// code on a public screen; each touch or key gives the visitor the whole delay again.
function watchIdleEntry() {
  clearTimeout(idleTimer);
  if (ENTRY_SCREENS.has(visio.state)) idleTimer = setTimeout(() => goHome(), ENTRY_IDLE_MS);
}

// ---------------------------------------------------------------------------
// Withdrawing a sharing agreement, outside any call

function openWithdraw() {
  withdrawVisit += 1;
  model.homeNotice = null;
  go("withdraw");
}

function forgetWithdrawEntry() {
  byId("withdraw-input").value = "";
  model.withdrawError = null;
  model.withdrawing = false;
}

function showWithdrawError(error) {
  model.withdrawError = error;
  view.drawWithdraw(tr, model);
  byId("withdraw-input").focus();
}

function clearWithdrawError() {
  if (!model.withdrawError) return;
  model.withdrawError = null;
  view.drawWithdraw(tr, model);
}

async function submitWithdraw(event) {
  event.preventDefault();
  if (model.withdrawing) return;
  const typed = byId("withdraw-input").value;
  const code = typedShareCode(typed);
  if (!code) {
    showWithdrawError(typed.trim() ? "unknown_share_code" : "empty");
    return;
  }
  const visit = withdrawVisit;
  model.withdrawing = true;
  model.withdrawError = null;
  view.drawWithdraw(tr, model);
  const outcome = await withdrawShare(signaling, code);
  if (visit !== withdrawVisit || visio.state !== "withdraw") return;
  model.withdrawing = false;
  if (outcome === "withdrawn") showWithdrawn();
  else showWithdrawError(outcome);
}

// Said, then home after a few seconds or at the first touch.
function showWithdrawn() {
  model.secondsLeft = WITHDRAWN_SCREEN_S;
  go("withdrawn");
  announce(tr.t("withdraw.done"));
  stopHomeCountdown();
  stopHomeCountdown = countdown(WITHDRAWN_SCREEN_S, (left) => {
    model.secondsLeft = Math.ceil(left);
    if (visio.state === "withdrawn") view.drawWithdrawn(tr, model);
    if (left <= 0) goHome();
  });
}

// ---------------------------------------------------------------------------
// Waiting in the queue

function serviceById(id, fallbackName) {
  const known = (model.services || []).find((service) => service.id === id);
  return known || { id, name: fallbackName || id, partner: "", visit_reasons: [] };
}

function enterQueue(message, notice, { offered = false } = {}) {
  closeCall();
  setCall(message.call);
  if (message.service) model.service = serviceById(message.service, message.service_name);
  model.position = message.position ?? 0;
  model.waitMin = message.wait_min_s ?? null;
  model.waitMax = message.wait_max_s ?? null;
  model.offered = offered;
  model.waitingNotice = notice;
  if (visio.state === "waiting") draw();
  else go("waiting");
  announce([notice && notice(tr), view.waitingAnnouncement(tr, model)].filter(Boolean).join(" "));
}

function positionChanged(message) {
  if (message.call !== model.call || visio.state !== "waiting") return;
  model.position = message.position;
  model.waitMin = message.wait_min_s ?? null;
  model.waitMax = message.wait_max_s ?? null;
  model.offered = false;
  draw();
  announce(view.waitingAnnouncement(tr, model));
}

async function leaveQueue() {
  const call = model.call;
  if (!call) return;
  try {
    await signaling.request("call.cancel", { call });
  } catch (error) {
    // Already answered or ended: the events that follow say what happened.
    console.warn("cancel refused", error);
    return;
  }
  if (model.call === call) await goHome((t) => t.t("home.left_queue"));
}

// ---------------------------------------------------------------------------
// The call

function connected(message) {
  setCall(message.call);
  model.service = serviceById(message.service);
  model.peer = message.peer;
  model.callStatus = "call.connecting";
  model.mediaFailureReported = false;
  if (visio.state === "in_call") view.drawInCall(tr, model);
  else go("in_call", byId("hangup-button"));
  announce(byId("call-peer").textContent);
  const mesh = media.start(message);
  people.update([...mesh.participants.values()], mesh.you);
  startText(message, mesh.you);
  documents = kioskDocumentsForCall(documents, message, { signaling, tr, say: announce });
  drawInterpreterPanel();
}

function startText(message, you) {
  byId("rtt-note").hidden = !message.rtt_transcript;
  text = textForCall(text, message, you, {
    signaling,
    log: byId("rtt-log"),
    live: byId("rtt-live"),
    form: byId("rtt-form"),
    tr,
    nameOf: (key) => people.nameOf(key),
  });
}

// Everything of the call leaves the screen: media, text, names.
function closeCall() {
  media.close();
  if (text) text.close();
  text = null;
  if (documents) documents.close();
  documents = null;
  people.clear();
  interpreter.reset();
  model.choosingInterpreter = false;
}

function participantsChanged(message) {
  if (message.call !== model.call || visio.state !== "in_call") return;
  media.participantsChanged(message);
  const you = media.mesh ? media.mesh.you : null;
  people.update(message.participants, you);
  const key = partyKey(message.party);
  if (message.change === "left" && text) text.participantLeft(key);
  if (key !== you) {
    announce(tr.t(`call.${message.change}`, { name: people.describe(message.party).name }));
  }
  drawInterpreterPanel();
}

function peerStateChanged(message) {
  if (message.call !== model.call || visio.state !== "in_call") return;
  const role = message.party ? roleOfKey(message.party) : "expert";
  if (message.party && media.mesh) media.mesh.presence(message.party, message.state);
  if (role !== "expert" && role !== "interpreter") return;
  const prefix = role === "expert" ? "call.peer" : "call.interpreter";
  model.callStatus = `${prefix}_${message.state === "lost" ? "lost" : "back"}`;
  view.drawInCall(tr, model);
  announce(tr.t(model.callStatus));
}

function reportMediaFailure() {
  if (model.mediaFailureReported || !model.call) return;
  model.mediaFailureReported = true;
  signaling
    .request("call.media_failed", { call: model.call, detail: "ICE connection failed" })
    .catch((error) => console.error("media failure not reported", error));
}

// ---------------------------------------------------------------------------
// Interpreter

function interpreterOffered() {
  return Boolean(model.service && model.service.interpreter && model.interpreterLanguages.length > 0);
}

function drawInterpreterPanel() {
  const panel = byId("interpreter-panel");
  const status = byId("interpreter-status");
  panel.hidden = !interpreterOffered() && status.hidden;
  const button = byId("interpreter-button");
  button.hidden = !interpreterOffered() || interpreter.present || model.choosingInterpreter;
  button.setAttribute("aria-disabled", String(interpreter.pending));
  const choices = byId("interpreter-choices");
  choices.hidden = !model.choosingInterpreter;
  if (model.choosingInterpreter) {
    choices.replaceChildren(
      ...model.interpreterLanguages.map((language) =>
        h(
          "button",
          {
            type: "button",
            class: "button button-primary interpreter-choice",
            "data-testid": `interpreter-language-${language}`,
            onclick: () => askForInterpreter(language),
          },
          tr.languageName(language),
          endonymOf(language) ? h("span", { class: "endonym", lang: language }, ` · ${endonymOf(language)}`) : null,
        ),
      ),
      h(
        "button",
        { type: "button", class: "button button-secondary interpreter-choice", onclick: () => chooseInterpreter(false) },
        tr.t("call.interpreter_cancel"),
      ),
    );
  }
}

// The language named in itself ("العربية"), for a citizen who does not read French;
// null when the browser does not know it or it reads the same.
function endonymOf(language) {
  try {
    const name = new Intl.DisplayNames([language], { type: "language" }).of(language);
    return name && name !== language && name !== tr.languageName(language) ? name : null;
  } catch {
    return null;
  }
}

function chooseInterpreter(open) {
  model.choosingInterpreter = open;
  drawInterpreterPanel();
  const target = open ? byId("interpreter-choices").querySelector("button") : byId("interpreter-button");
  if (target && !target.hidden) target.focus();
}

function interpreterButtonPressed() {
  if (interpreter.pending || !model.call) return;
  if (model.interpreterLanguages.length === 1) askForInterpreter(model.interpreterLanguages[0]);
  else chooseInterpreter(true);
}

async function askForInterpreter(language) {
  const call = model.call;
  model.choosingInterpreter = false;
  interpreter.requesting(language);
  announce(byId("interpreter-status").textContent);
  try {
    await requestInterpreter(signaling, call, language);
  } catch (error) {
    if (model.call !== call) return;
    interpreter.failed(language, error);
    announce(byId("interpreter-status").textContent);
  }
}

function interpreterChanged(message) {
  if (message.call !== model.call) return;
  interpreter.update(message);
  announce(byId("interpreter-status").textContent);
}

async function hangUp() {
  const call = model.call;
  if (!call) return;
  try {
    await signaling.request("call.hangup", { call });
  } catch (error) {
    console.warn("hangup refused", error);
    return;
  }
  callEnded({ call, outcome: "answered" });
}

// call.ended may arrive before or after the hangup or cancel reply; the first
// one wins. Leaving the queue is the visitor's own choice: no thank-you screen.
function callEnded(message) {
  if (message.call !== model.call) return;
  if (message.outcome === "abandoned") {
    goHome((t) => t.t("home.left_queue"));
    return;
  }
  closeCall();
  setCall(null);
  model.outcome = ENDED_OUTCOMES.has(message.outcome) ? message.outcome : "other";
  model.secondsLeft = ENDED_SCREEN_S;
  go("ended");
  announce(`${tr.t("ended.title")}. ${tr.t(`ended.${model.outcome}`)}`);
  stopHomeCountdown();
  stopHomeCountdown = countdown(ENDED_SCREEN_S, (left) => {
    model.secondsLeft = Math.ceil(left);
    if (visio.state === "ended") view.drawEnded(tr, model);
    if (left <= 0) goHome();
  });
}

// ---------------------------------------------------------------------------
// Connection, reconnection and resumption

// The shell checked the role; a kiosk that reconnects finds out about its call.
function welcomed(welcome) {
  model.services = welcome.services;
  if (model.call) {
    clearTimeout(resumeTimer);
    resumeTimer = setTimeout(() => {
      if (model.call) callEnded({ call: model.call, outcome: "failed" });
    }, RESUME_WAIT_MS);
  }
  model.interpreterLanguages = welcome.interpreter_languages || [];
  if (visio.state === "provisioning") go("home");
  else if (visio.state === "home") draw();
  else if (visio.state === "in_call") drawInterpreterPanel();
}

// After a reconnection: the server tells which call this kiosk still has, and
// for a connected call sends call.connected again right after, which restarts
// the media.
function resumed(message) {
  clearTimeout(resumeTimer);
  setCall(message.call);
  model.service = serviceById(message.service);
  if (message.state === "connected") {
    if (visio.state !== "in_call") {
      model.peer = null;
      model.callStatus = "call.connecting";
      go("in_call", byId("hangup-button"));
    }
    return;
  }
  enterQueue({ call: message.call, position: message.position ?? 0 }, null, {
    offered: message.state === "offered",
  });
}

function wireEvents() {
  signaling.on("call.position", positionChanged);
  signaling.on("call.connected", connected);
  signaling.on("call.participants", participantsChanged);
  signaling.on("call.interpreter", interpreterChanged);
  signaling.on("call.peer_state", peerStateChanged);
  signaling.on("call.requeued", (message) => {
    if (message.call === model.call) enterQueue(message, (t) => t.t("waiting.requeued"));
  });
  signaling.on("call.transferred", (message) => {
    if (message.call !== model.call) return;
    enterQueue(message, (t) => t.t("waiting.transferred", { service: message.service_name }));
  });
  signaling.on("call.ended", callEnded);
  signaling.on("call.resumed", resumed);

  byId("number-form").addEventListener("submit", requestCall);
  byId("beneficiary-input").addEventListener("input", clearNumberError);
  byId("number-back").addEventListener("click", () => goHome());
  byId("cancel-button").addEventListener("click", leaveQueue);
  byId("hangup-button").addEventListener("click", hangUp);
  byId("interpreter-button").addEventListener("click", interpreterButtonPressed);
  byId("ended-home").addEventListener("click", () => goHome());
  byId("withdraw-open").addEventListener("click", openWithdraw);
  byId("withdraw-form").addEventListener("submit", submitWithdraw);
  byId("withdraw-input").addEventListener("input", clearWithdrawError);
  byId("withdraw-back").addEventListener("click", () => goHome());
  // A touch anywhere on the page (its button included) ends the withdrawn screen;
  // a click, not a pointerdown, so the finger is lifted before home shows.
  byId("main").addEventListener("click", () => {
    if (visio.state === "withdrawn") goHome();
  });
  // "input" too: some on-screen keyboards type without key events.
  for (const type of ["pointerdown", "keydown", "input"]) {
    document.addEventListener(type, watchIdleEntry, { passive: true });
  }
}

async function main() {
  await shell.start();
  view.drawPictograms();
  view.buildKeypad(tr, pressKey);
  wireEvents();
  go("home");
  shell.connect();
  setInterval(() => {
    if (visio.state === "home") view.drawHome(tr, model, pickService);
  }, HOME_REFRESH_MS);
}

main();
