// The console of experts and interpreters: status, incoming calls, the call itself,
// wrap-up.
//
// The server owns the person's state; this page shows what `expert.state` says and
// uses the richer events (offer, connection, wrap-up) for the details. What the page
// offers during a call follows the part this person plays in it, which the server
// names in `call.connected.you`: the call's expert hangs up for everyone, transfers,
// asks for an interpreter and reads the supervisor's whispers; an interpreter (an
// interpreter token, or an expert who joined someone else's call) only leaves.
//
// Served at /expert, and at /interpreter when the server maps it to this page: the
// path only chooses where the token is kept, so an interpreter's workstation and an
// expert's can share a browser.

import { PageShell } from "/static/shell.js";
import { MediaSlot, roleOfKey } from "/static/call-media.js";
import { textForCall } from "/static/call-text.js";
import { CallPeople, InterpreterStatus, requestInterpreter } from "/static/call-people.js";
import { Whisper } from "/static/call-whisper.js";
import { documentStateText, documentsForCall } from "/static/call-documents.js";
import { DocumentViewer } from "/static/document-viewer.js";
import { announce, byId, h, showScreen } from "/static/dom.js";
import { clock, countdown } from "/static/format.js";
import { RingTone } from "/static/ringtone.js";

const PAGE = location.pathname.replace(/\/+$/, "") === "/interpreter" ? "interpreter" : "expert";
const KNOWN_REASONS = new Set(["offer_timeout"]);
const WITHDRAWN_REASONS = new Set(["timeout", "taken", "cancelled", "declined", "status", "expert_lost"]);
const KNOWN_ERRORS = new Set([
  "no_expert", "queue_full", "same_service", "not_offered", "unknown_call", "not_in_call",
  "not_in_wrap_up", "disconnected", "timeout", "service_unavailable",
]);

const shell = new PageShell({
  page: PAGE,
  roles: ["expert", "interpreter"],
  state: "idle",
  hooks: {
    welcome: welcomed,
    signedOut: () => {
      closeCall();
      setCall(null);
      byId("status-bar").hidden = true;
      byId("state-line").hidden = true;
    },
    provisioned: () => go("idle"),
    replaced: () => closeCall(),
    redraw: redrawAll,
  },
});
const { signaling, tr, visio } = shell;
const ring = new RingTone();
const people = new CallPeople({ list: byId("people"), tr, supervisorNotice: byId("supervisor-notice") });
const interpreter = new InterpreterStatus({ element: byId("interpreter-status"), tr, onChange: () => drawInterpreterPanel() });
const media = new MediaSlot({
  signaling,
  role: "expert",
  stage: byId("call-stage"),
  mainRoles: ["kiosk"],
  describe: (party, isSelf) => people.describe(party, isSelf),
  onStatus: (status) => {
    model.mediaStatus = status;
    drawCallStatus();
  },
  onFailure: (key) => {
    if (model.callRole === "expert" && roleOfKey(key) === "kiosk") reportMediaFailure();
  },
});
visio.useMedia(() => media.mesh);

const model = {
  role: null,
  name: "",
  services: [],
  interpreterLanguages: [],
  status: "break",
  state: "idle",
  notice: null,
  offer: null,
  connected: null,
  callRole: null,
  mediaStatus: null,
  peerNotice: null,
  mediaFailureReported: false,
  wrapUp: null,
};
// A second click on Accept while the first is on its way must not be refused
// and tear the call down.
let answering = false;
let stopTimers = () => {};
let text = null;
let whisper = null;
let documents = null;
const viewer = new DocumentViewer({
  dialog: byId("document-viewer"),
  tr,
  getToken: () => shell.tokens.get(),
  describe: (document) => documentStateText(tr, document),
  onReview: (document, verdict, reason) => documents.review(document, verdict, reason),
});

function explain(error) {
  return KNOWN_ERRORS.has(error.code) ? tr.t(`console.error.${error.code}`) : error.message;
}

// ---------------------------------------------------------------------------
// Screens and status

function go(state, focusTarget) {
  stopTimers();
  stopTimers = () => {};
  if (state !== "offered") stopRinging();
  visio.state = state;
  showScreen(state, focusTarget);
}

function setCall(call) {
  visio.call = call;
}

// `notice`: a function of the translator, so it follows a language switch.
function notify(notice) {
  model.notice = notice;
  byId("state-notice").textContent = notice ? notice(tr) : "";
}

function drawStatus() {
  for (const button of document.querySelectorAll("[data-status]")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === model.status));
  }
  const status = tr.has(`console.status.${model.status}`) ? tr.t(`console.status.${model.status}`) : model.status;
  const state = tr.has(`console.state.${model.state}`) ? tr.t(`console.state.${model.state}`) : model.state;
  byId("state-text").textContent = `${status} — ${state}`;
  byId("idle-help").textContent = tr.t(model.status === "available" ? "console.idle.available" : "console.idle.unavailable");
}

function drawHeader() {
  const role = model.role === "interpreter" || PAGE === "interpreter" ? "interpreter" : "expert";
  byId("console-title").textContent = tr.t(`console.header.${role}`);
  document.title = tr.t(`console.page_title.${role}`);
  if (document.body.classList.contains("ringing")) document.title = tr.t("console.ring_title");
  const serviceNames = model.services.map((service) => service.name).join(", ");
  byId("identity").textContent = serviceNames ? `${model.name} — ${serviceNames}` : model.name;
}

function showStatus(status, state, reason = "") {
  model.status = status;
  model.state = state;
  drawStatus();
  if (KNOWN_REASONS.has(reason)) notify((t) => t.t(`console.reason.${reason}`));
}

async function setStatus(newStatus) {
  ring.unlock();
  notify(null);
  try {
    await signaling.request("expert.status", { status: newStatus });
  } catch (error) {
    notify((t) => t.t("console.status_failed", { why: explain(error) }));
  }
}

function redrawAll() {
  drawHeader();
  drawStatus();
  if (model.notice) byId("state-notice").textContent = model.notice(tr);
  if (model.offer && visio.state === "offered") drawOffer();
  if (model.connected) {
    drawCall();
    fillTransferTargets(model.connected.transfer_targets || []);
    fillInterpreterLanguages();
  }
  if (model.wrapUp && visio.state === "wrap_up") drawWrapUpTitle();
  people.draw();
  media.redraw();
  interpreter.draw();
  if (text) text.redraw();
  if (documents) documents.redraw();
  viewer.redraw();
}

// ---------------------------------------------------------------------------
// Offers

function offered(message) {
  model.offer = message;
  setCall(message.call);
  drawOffer();
  notify(null);
  go("offered", byId("ring-title"));
  startRinging();
  announce(`${byId("ring-title").textContent} : ${message.joins_service_name || message.service_name}, ${message.kiosk.name}`);

  const waitedSince = performance.now() - message.waited_s * 1000;
  const progress = byId("offer-progress");
  stopTimers = countdown(message.expires_in_s, (left) => {
    byId("offer-countdown").textContent = tr.t("console.offer.countdown", { seconds: Math.ceil(left) });
    progress.value = message.expires_in_s > 0 ? left / message.expires_in_s : 0;
    byId("offer-waited").textContent = clock((performance.now() - waitedSince) / 1000);
  });
}

function showRow(id, shown) {
  byId(id).hidden = !shown;
  byId(`${id}-term`).hidden = !shown;
}

function drawOffer() {
  const offer = model.offer;
  const joins = Boolean(offer.joins);
  byId("ring-title").textContent = tr.t(joins ? "console.offer.title_join" : "console.offer.title");
  byId("offer-joins").textContent = joins ? offer.joins_service_name || offer.joins : "";
  showRow("offer-joins", joins);
  byId("offer-service").textContent = offer.service_name || offer.service;
  byId("offer-beneficiary").textContent = offer.beneficiary || tr.t("console.offer.no_beneficiary");
  showRow("offer-beneficiary", !joins || Boolean(offer.beneficiary));
  byId("offer-kiosk").textContent = [offer.kiosk.name, offer.kiosk.place].filter(Boolean).join(" — ");
  byId("offer-language").textContent = offer.language ? tr.languageName(offer.language) : tr.t("console.offer.default_language");
  byId("offer-interpreter").textContent = tr.t(offer.interpreter ? "console.offer.interpreter_asked" : "console.offer.interpreter_no");
  showRow("offer-interpreter", !joins);
  const from = offer.transferred_from;
  byId("offer-transferred").textContent = from ? offer.transferred_from_name || serviceName(from) : "";
  showRow("offer-transferred", Boolean(from));
}

function startRinging() {
  ring.start();
  document.body.classList.add("ringing");
  document.title = tr.t("console.ring_title");
}

function stopRinging() {
  ring.stop();
  document.body.classList.remove("ringing");
  drawHeader();
}

async function answerOffer(accept) {
  if (!model.offer || answering) return;
  const call = model.offer.call;
  stopRinging();
  answering = true;
  try {
    await signaling.request(accept ? "offer.accept" : "offer.reject", { call });
  } catch (error) {
    notify((t) => t.t(accept ? "console.accept_failed" : "console.reject_failed", { why: explain(error) }));
    if (model.offer && model.offer.call === call) backToIdle();
    return;
  } finally {
    answering = false;
  }
  if (!accept && model.offer && model.offer.call === call) backToIdle();
}

function withdrawn(message) {
  if (!model.offer || message.call !== model.offer.call || visio.state !== "offered") return;
  const reason = WITHDRAWN_REASONS.has(message.reason) ? message.reason : "other";
  notify((t) => t.t(`console.withdrawn.${reason}`));
  backToIdle();
}

function backToIdle() {
  model.offer = null;
  closeCall();
  setCall(null);
  if (visio.state !== "idle") go("idle");
}

// ---------------------------------------------------------------------------
// The call

function serviceName(id) {
  const known = model.services.find((service) => service.id === id);
  return known ? known.name : id;
}

function connected(message) {
  setCall(message.call);
  const offer = model.offer && model.offer.call === message.call ? model.offer : null;
  const joined = model.offer && model.offer.joins === message.call ? model.offer : null;
  const beneficiary = message.beneficiary || (offer && offer.beneficiary) || "";
  // An interpreter's own services are not the call's: the offer named it.
  const previous = model.connected && model.connected.call === message.call ? model.connected : null;
  const named = (joined && joined.joins_service_name) || (previous && previous.serviceName) || "";
  model.connected = { ...message, beneficiary, serviceName: named };
  model.offer = null;
  model.peerNotice = null;
  model.mediaFailureReported = false;
  if (visio.state !== "in_call") go("in_call", byId("hangup-button"));
  const mesh = media.start(message);
  model.callRole = mesh.keyed ? roleOfKey(mesh.you) : "expert";
  people.update([...mesh.participants.values()], mesh.you);
  startText(message, mesh.you);
  startWhisper(message);
  startDocuments(message);
  drawCall();
  fillTransferTargets(message.transfer_targets || []);
  fillInterpreterLanguages();
  drawInterpreterPanel();
}

function drawCall() {
  const message = model.connected;
  const kiosk = message.peer;
  const place = kiosk.place ? ` (${kiosk.place})` : "";
  const leads = model.callRole === "expert";
  byId("call-title").textContent = leads
    ? tr.t("console.call.title", { name: `${kiosk.name}${place}` })
    : tr.t("console.call.title_interpreter", { name: `${kiosk.name}${place}` });
  const details = [tr.t("console.call.service", { service: message.serviceName || serviceName(message.service) })];
  if (message.beneficiary) details.push(tr.t("console.call.beneficiary", { beneficiary: message.beneficiary }));
  byId("call-details").textContent = details.join(" — ");
  byId("hangup-button").textContent = tr.t(leads ? "console.call.hangup" : "console.call.leave");
  byId("transfer-form").hidden = !leads || (message.transfer_targets || []).length === 0;
  document.body.dataset.callRole = model.callRole;
  drawCallStatus();
  drawWhisperPanel();
}

function drawCallStatus() {
  const words = [];
  if (model.mediaStatus) words.push(tr.t(`console.media.${model.mediaStatus}`));
  if (model.peerNotice) words.push(model.peerNotice(tr));
  byId("call-status").textContent = words.join(" ");
}

// The targets are the other services of the caller's kiosk, which the server
// lists: the expert's own skills say nothing of what the kiosk offers.
function fillTransferTargets(targets) {
  const select = byId("transfer-service");
  const chosen = select.value;
  select.replaceChildren(
    ...targets.map((service) =>
      h("option", { value: service.id }, service.open ? service.name : tr.t("console.transfer.closed", { service: service.name })),
    ),
  );
  if (chosen) select.value = chosen;
  byId("transfer-form").hidden = model.callRole !== "expert" || targets.length === 0;
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

// Whispers reach the call's expert only; they answer whoever wrote last.
function startWhisper(message) {
  if (model.callRole !== "expert") {
    if (whisper) whisper.close();
    whisper = null;
    return;
  }
  if (whisper && whisper.call === message.call) return;
  if (whisper) whisper.close();
  whisper = new Whisper({
    signaling,
    call: message.call,
    log: byId("whisper-log"),
    form: byId("whisper-form"),
    tr,
    nameOf: (key) => people.nameOf(key),
    peer: (lastSender) => {
      const supervisors = people.byRole("supervisor").map((party) => party.key);
      if (lastSender && supervisors.includes(lastSender)) return lastSender;
      return supervisors[0] || null;
    },
    onMessage: () => {
      drawWhisperPanel();
      announce(tr.t("whisper.received"));
    },
  });
}

// The kiosk's devices and the case file belong to the call's expert: an
// interpreter neither scans nor judges the citizen's documents.
function startDocuments(message) {
  const leads = model.callRole === "expert";
  byId("documents").hidden = !leads;
  document.body.dataset.documents = String(leads);
  if (!leads) {
    if (documents) documents.close();
    documents = null;
    return;
  }
  documents = documentsForCall(documents, message, {
    signaling,
    tr,
    getToken: () => shell.tokens.get(),
    viewer,
    say: announce,
  });
}

function drawWhisperPanel() {
  const supervised = people.byRole("supervisor").length > 0;
  const hasLines = byId("whisper-log").childElementCount > 0;
  byId("whisper").hidden = model.callRole !== "expert" || !(supervised || hasLines);
}

function closeCall() {
  media.close();
  if (text) text.close();
  text = null;
  if (whisper) whisper.close();
  whisper = null;
  if (documents) documents.close();
  documents = null;
  byId("documents").hidden = true;
  delete document.body.dataset.documents;
  people.clear();
  interpreter.reset();
  model.connected = null;
  model.callRole = null;
  model.mediaStatus = null;
  model.peerNotice = null;
  delete document.body.dataset.callRole;
  byId("whisper").hidden = true;
}

function participantsChanged(message) {
  if (message.call !== visio.call || visio.state !== "in_call") return;
  media.participantsChanged(message);
  const you = media.mesh ? media.mesh.you : null;
  people.update(message.participants, you);
  const key = message.party.key || `${message.party.role}:${message.party.id}`;
  if (message.change === "left" && text) text.participantLeft(key);
  if (key !== you) {
    announce(tr.t(`call.${message.change}`, { name: people.describe(message.party).name }));
  }
  drawWhisperPanel();
  drawInterpreterPanel();
}

function peerStateChanged(message) {
  if (message.call !== visio.call || visio.state !== "in_call") return;
  const role = message.party ? roleOfKey(message.party) : "kiosk";
  if (message.party && media.mesh) media.mesh.presence(message.party, message.state);
  if (role === "supervisor") return;
  const state = message.state === "lost" ? "lost" : "back";
  model.peerNotice = (t) => t.t(`console.peer.${role}_${state}`);
  drawCallStatus();
  announce(model.peerNotice(tr));
}

function reportMediaFailure() {
  const call = visio.call;
  if (model.mediaFailureReported || !call) return;
  model.mediaFailureReported = true;
  signaling
    .request("call.media_failed", { call, detail: "ICE connection failed" })
    .catch((error) => console.error("media failure not reported", error));
}

async function hangUp() {
  const call = visio.call;
  if (!call) return;
  try {
    await signaling.request("call.hangup", { call });
  } catch (error) {
    notify((t) => t.t("console.hangup_failed", { why: explain(error) }));
    return;
  }
  // The call's expert gets wrapup.started next; an interpreter has simply left.
  if (visio.state === "in_call" && visio.call === call) backToIdle();
}

async function transfer(event) {
  event.preventDefault();
  const call = visio.call;
  const target = byId("transfer-service").value;
  if (!call || !target) return;
  try {
    await signaling.request("call.transfer", { call, service: target });
  } catch (error) {
    notify((t) => t.t("console.transfer.failed", { why: explain(error) }));
    return;
  }
  const name = serviceName(target);
  notify((t) => t.t("console.transfer.done", { service: name }));
  if (visio.state === "in_call" && visio.call === call) backToIdle();
}

function callEnded(message) {
  if (message.call !== visio.call || visio.state === "wrap_up") return;
  backToIdle();
}

// ---------------------------------------------------------------------------
// Interpreter requests (by the call's expert)

function fillInterpreterLanguages() {
  const select = byId("interpreter-language");
  const chosen = select.value;
  select.replaceChildren(
    ...model.interpreterLanguages.map((language) => h("option", { value: language }, tr.languageName(language))),
  );
  if (chosen) select.value = chosen;
}

function drawInterpreterPanel() {
  const canAsk = model.callRole === "expert" && model.interpreterLanguages.length > 0;
  byId("interpreter-panel").hidden = !canAsk && byId("interpreter-status").hidden;
  byId("interpreter-form").hidden = !canAsk || interpreter.present;
  byId("interpreter-button").disabled = interpreter.pending;
}

async function askForInterpreter(event) {
  event.preventDefault();
  const call = visio.call;
  const language = byId("interpreter-language").value;
  if (!call || !language || interpreter.pending) return;
  interpreter.requesting(language);
  try {
    await requestInterpreter(signaling, call, language);
  } catch (error) {
    if (visio.call !== call) return;
    interpreter.failed(language, error);
    notify((t) => t.t("console.interpreter.failed", { why: explain(error) }));
  }
}

function interpreterChanged(message) {
  if (message.call !== visio.call) return;
  interpreter.update(message);
  announce(byId("interpreter-status").textContent);
}

// ---------------------------------------------------------------------------
// Wrap-up

function wrapUpStarted(message) {
  closeCall();
  setCall(message.call);
  model.wrapUp = message;
  drawWrapUpTitle();
  byId("wrapup-error").textContent = "";
  byId("wrapup-reasons").replaceChildren(
    ...message.reasons.map((reason, index) =>
      h(
        "p",
        { class: "reason" },
        h("input", {
          type: "radio",
          name: "reason",
          id: `wrapup-reason-${index}`,
          value: reason,
          "data-testid": `wrapup-reason-${index}`,
        }),
        h("label", { for: `wrapup-reason-${index}` }, reason),
      ),
    ),
  );
  go("wrap_up", byId("wrapup-title"));
  stopTimers = countdown(message.deadline_in_s, (left) => {
    byId("wrapup-deadline").textContent = tr.t("console.wrapup.time_left", { time: clock(left) });
  });
}

function drawWrapUpTitle() {
  byId("wrapup-title").textContent = tr.t("console.wrapup.title", { service: serviceName(model.wrapUp.service) });
}

async function finishWrapUp(event) {
  event.preventDefault();
  const chosen = byId("wrapup-form").querySelector("input[name=reason]:checked");
  if (!chosen) {
    byId("wrapup-error").textContent = tr.t("console.wrapup.choose");
    byId("wrapup-reasons").querySelector("input").focus();
    return;
  }
  const call = visio.call;
  try {
    await signaling.request("wrapup.done", { call, reason: chosen.value });
  } catch (error) {
    byId("wrapup-error").textContent = tr.t("console.wrapup.failed", { why: explain(error) });
    return;
  }
  if (visio.state === "wrap_up" && visio.call === call) {
    model.wrapUp = null;
    backToIdle();
  }
}

// ---------------------------------------------------------------------------
// Server state and connection

function expertStateChanged(message) {
  showStatus(message.status, message.state, message.reason);
  if (message.state === "idle" || message.state === "disconnected") {
    if (visio.state !== "idle") backToIdle();
  }
}

function welcomed(welcome) {
  model.role = welcome.role;
  model.name = welcome.name;
  model.services = welcome.services;
  model.interpreterLanguages = welcome.interpreter_languages || [];
  drawHeader();
  byId("status-bar").hidden = false;
  byId("state-line").hidden = false;
  showStatus(welcome.status || "break", welcome.state || "idle");
  if (visio.state === "provisioning") go("idle");
  if (model.connected) {
    fillInterpreterLanguages();
    drawInterpreterPanel();
  }
}

function wireEvents() {
  signaling.on("expert.state", expertStateChanged);
  signaling.on("call.offered", offered);
  signaling.on("offer.withdrawn", withdrawn);
  signaling.on("call.connected", connected);
  signaling.on("call.participants", participantsChanged);
  signaling.on("call.interpreter", interpreterChanged);
  signaling.on("call.peer_state", peerStateChanged);
  signaling.on("call.ended", callEnded);
  signaling.on("wrapup.started", wrapUpStarted);

  for (const button of document.querySelectorAll("[data-status]")) {
    button.addEventListener("click", () => setStatus(button.dataset.status));
  }
  // After a reload the server may put the expert back as available without a
  // click: any first gesture on the page is enough to allow the ring's sound.
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, () => ring.unlock(), { once: true });
  }
  byId("accept-button").addEventListener("click", () => answerOffer(true));
  byId("reject-button").addEventListener("click", () => answerOffer(false));
  byId("hangup-button").addEventListener("click", hangUp);
  byId("transfer-form").addEventListener("submit", transfer);
  byId("interpreter-form").addEventListener("submit", askForInterpreter);
  byId("wrapup-form").addEventListener("submit", finishWrapUp);
}

async function main() {
  await shell.start();
  drawHeader();
  drawStatus();
  wireEvents();
  shell.connect();
}

main();
