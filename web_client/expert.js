// The expert's console: status, incoming calls, the call itself, wrap-up.
//
// The server owns the expert's state; this page shows what `expert.state` says
// and uses the richer events (offer, connection, wrap-up) for the details.

import { SignalingClient } from "/static/signaling.js";
import { MediaSlot } from "/static/rtc.js";
import { bindTokenForm, showTokenError, storedToken } from "/static/token.js";
import { exposePageState } from "/static/page-state.js";
import { announce, byId, h, showScreen } from "/static/dom.js";
import { clock, countdown } from "/static/format.js";
import { RingTone } from "/static/ringtone.js";

const EXPERT_ROLES = new Set(["expert", "interpreter"]);
const PAGE_TITLE = document.title;
const RING_TITLE = "Appel entrant — Visio-guichet";

const STATUS_WORDS = {
  available: "Disponible",
  break: "En pause",
  logged_out: "Déconnecté",
};
const STATE_WORDS = {
  idle: "en attente d'un appel",
  offered: "appel entrant",
  in_call: "en communication",
  wrap_up: "fin d'appel",
  disconnected: "hors ligne",
};
const REASON_WORDS = {
  offer_timeout: "Vous avez été mis en pause : un appel proposé n'a pas reçu de réponse à temps.",
};
const WITHDRAWN_WORDS = {
  timeout: "L'appel proposé n'a pas été pris à temps.",
  taken: "L'appel a été pris par un autre conseiller.",
  cancelled: "L'usager a quitté la file.",
  declined: "Appel refusé.",
  status: "L'appel proposé a été retiré après votre changement de statut.",
  expert_lost: "L'appel proposé a été retiré : votre connexion a été perdue.",
};
const MEDIA_WORDS = {
  connecting: "Connexion de la vidéo…",
  connected: "Vidéo établie.",
  unstable: "Connexion instable…",
  failed: "La vidéo n'a pas pu être établie.",
  no_camera: "Votre caméra ou votre micro ne fonctionne pas : l'usager ne vous voit pas.",
};
const LANGUAGE_NAMES = { fr: "français", en: "anglais" };
// The server's reasons are in English; the codes say the same in French.
const ERROR_WORDS = {
  no_expert: "aucun conseiller de ce service n'est connecté",
  queue_full: "la file de ce service est pleine",
  same_service: "l'appel est déjà dans ce service",
  not_offered: "l'appel ne vous est plus proposé",
  unknown_call: "l'appel n'existe plus",
  not_in_call: "l'appel n'est pas en cours",
  not_in_wrap_up: "la fin d'appel est déjà close",
  disconnected: "pas de connexion au serveur",
  timeout: "le serveur n'a pas répondu",
  service_unavailable: "le service est momentanément indisponible, réessayez dans un instant",
};

function explain(error) {
  return ERROR_WORDS[error.code] || error.message;
}

const signaling = new SignalingClient({ getToken: storedToken, getLanguage: () => "fr" });
const ring = new RingTone();
const media = new MediaSlot({
  signaling,
  localVideo: byId("local-video"),
  remoteVideo: byId("remote-video"),
  onStatus: (mediaStatus) => {
    byId("call-status").textContent = MEDIA_WORDS[mediaStatus] || "";
  },
});
const visio = exposePageState({ state: "idle", signaling, currentMedia: () => media.media });

let services = [];
let offer = null;
// A second click on Accept while the first is on its way must not be refused
// and tear the call down.
let answering = false;
let stopTimers = () => {};

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

function showStatus(status, state, reason = "") {
  for (const button of document.querySelectorAll("[data-status]")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === status));
  }
  byId("state-text").textContent = `${STATUS_WORDS[status] || status} — ${STATE_WORDS[state] || state}`;
  if (reason in REASON_WORDS) notify(REASON_WORDS[reason]);
  byId("idle-help").textContent =
    status === "available"
      ? "Les appels vous seront proposés ici."
      : "Vous ne recevez pas d'appel. Choisissez « Disponible » pour en recevoir.";
}

function notify(text) {
  byId("state-notice").textContent = text;
}

async function setStatus(newStatus) {
  ring.unlock();
  notify("");
  try {
    await signaling.request("expert.status", { status: newStatus });
  } catch (error) {
    notify(`Statut non modifié : ${explain(error)}`);
  }
}

// ---------------------------------------------------------------------------
// Offers

function offered(message) {
  offer = message;
  setCall(message.call);
  byId("offer-service").textContent = message.service_name || message.service;
  byId("offer-beneficiary").textContent = message.beneficiary || "non renseigné";
  byId("offer-kiosk").textContent = [message.kiosk.name, message.kiosk.place].filter(Boolean).join(" — ");
  byId("offer-language").textContent = LANGUAGE_NAMES[message.language] || message.language || "français";
  byId("offer-interpreter").textContent = message.interpreter ? "demandé" : "non";
  const from = message.transferred_from;
  byId("offer-transferred").textContent = from ? message.transferred_from_name || serviceName(from) : "";
  byId("offer-transferred").hidden = !from;
  byId("offer-transferred-term").hidden = !from;
  notify("");
  go("offered", byId("ring-title"));
  startRinging();
  announce(`Appel entrant : ${message.service_name}, ${message.kiosk.name}`);

  const waitedSince = performance.now() - message.waited_s * 1000;
  const progress = byId("offer-progress");
  const stopCountdown = countdown(message.expires_in_s, (left) => {
    byId("offer-countdown").textContent = `Répondre dans ${Math.ceil(left)} s`;
    progress.value = message.expires_in_s > 0 ? left / message.expires_in_s : 0;
    byId("offer-waited").textContent = clock((performance.now() - waitedSince) / 1000);
  });
  stopTimers = stopCountdown;
}

function startRinging() {
  ring.start();
  document.body.classList.add("ringing");
  document.title = RING_TITLE;
}

function stopRinging() {
  ring.stop();
  document.body.classList.remove("ringing");
  document.title = PAGE_TITLE;
}

async function answerOffer(accept) {
  if (!offer || answering) return;
  const call = offer.call;
  stopRinging();
  answering = true;
  try {
    await signaling.request(accept ? "offer.accept" : "offer.reject", { call });
  } catch (error) {
    notify(`Impossible de ${accept ? "prendre" : "refuser"} l'appel : ${explain(error)}`);
    if (offer && offer.call === call) backToIdle();
    return;
  } finally {
    answering = false;
  }
  if (!accept && offer && offer.call === call) backToIdle();
}

function withdrawn(message) {
  if (!offer || message.call !== offer.call || visio.state !== "offered") return;
  notify(WITHDRAWN_WORDS[message.reason] || "L'appel proposé a été retiré.");
  backToIdle();
}

function backToIdle() {
  offer = null;
  media.close();
  setCall(null);
  if (visio.state !== "idle") go("idle");
}

// ---------------------------------------------------------------------------
// The call

function serviceName(id) {
  const known = services.find((service) => service.id === id);
  return known ? known.name : id;
}

function connected(message) {
  setCall(message.call);
  const peer = message.peer;
  const place = peer.place ? ` (${peer.place})` : "";
  byId("call-title").textContent = `En communication avec ${peer.name}${place}`;
  const beneficiary = message.beneficiary || (offer && offer.beneficiary) || "";
  byId("call-details").textContent =
    `Service : ${serviceName(message.service)}` + (beneficiary ? ` — N° bénéficiaire : ${beneficiary}` : "");
  fillTransferTargets(message.transfer_targets || []);
  offer = null;
  if (visio.state !== "in_call") go("in_call", byId("hangup-button"));
  media.start({ call: message.call, iceServers: message.ice_servers, initiator: message.initiator });
}

// The targets are the other services of the caller's kiosk, which the server
// lists: the expert's own skills say nothing of what the kiosk offers.
function fillTransferTargets(targets) {
  byId("transfer-form").hidden = targets.length === 0;
  byId("transfer-service").replaceChildren(
    ...targets.map((service) => h("option", { value: service.id }, `${service.name}${service.open ? "" : " (fermé)"}`)),
  );
}

function peerStateChanged(message) {
  if (message.call !== visio.call || visio.state !== "in_call") return;
  const text =
    message.state === "lost"
      ? "La connexion de la borne est perdue, veuillez patienter."
      : "La borne est de retour.";
  byId("call-status").textContent = text;
  announce(text);
}

async function hangUp() {
  const call = visio.call;
  if (!call) return;
  try {
    await signaling.request("call.hangup", { call });
  } catch (error) {
    notify(`Raccrocher a échoué : ${explain(error)}`);
    return;
  }
  // wrapup.started follows; until then the call is simply over.
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
    notify(`Transfert impossible : ${explain(error)}`);
    return;
  }
  notify(`Appel transféré vers ${serviceName(target)}.`);
  if (visio.state === "in_call" && visio.call === call) backToIdle();
}

function callEnded(message) {
  if (message.call !== visio.call || visio.state === "wrap_up") return;
  backToIdle();
}

// ---------------------------------------------------------------------------
// Wrap-up

function wrapUpStarted(message) {
  media.close();
  setCall(message.call);
  byId("wrapup-title").textContent = `Fin d'appel — ${serviceName(message.service)}`;
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
    byId("wrapup-deadline").textContent = `Temps restant : ${clock(left)}`;
  });
}

async function finishWrapUp(event) {
  event.preventDefault();
  const chosen = byId("wrapup-form").querySelector("input[name=reason]:checked");
  if (!chosen) {
    byId("wrapup-error").textContent = "Choisissez un motif.";
    byId("wrapup-reasons").querySelector("input").focus();
    return;
  }
  const call = visio.call;
  try {
    await signaling.request("wrapup.done", { call, reason: chosen.value });
  } catch (error) {
    byId("wrapup-error").textContent = `Motif non enregistré : ${explain(error)}`;
    return;
  }
  if (visio.state === "wrap_up" && visio.call === call) backToIdle();
}

// ---------------------------------------------------------------------------
// Server state, connection and provisioning

function expertStateChanged(message) {
  showStatus(message.status, message.state, message.reason);
  if (message.state === "idle" || message.state === "disconnected") {
    if (visio.state !== "idle") backToIdle();
  }
}

function welcomed(welcome) {
  if (!EXPERT_ROLES.has(welcome.role)) {
    signaling.stop();
    askForToken("Ce jeton n'est pas celui d'un poste de conseiller.");
    return;
  }
  services = welcome.services;
  const serviceNames = services.map((service) => service.name).join(", ");
  byId("identity").textContent = serviceNames ? `${welcome.name} — ${serviceNames}` : welcome.name;
  byId("status-bar").hidden = false;
  byId("state-line").hidden = false;
  showStatus(welcome.status || "break", welcome.state || "idle");
  if (visio.state === "provisioning") go("idle");
}

function askForToken(message) {
  media.close();
  setCall(null);
  byId("status-bar").hidden = true;
  byId("state-line").hidden = true;
  go("provisioning", byId("token-input"));
  showTokenError(byId("token-form"), message);
}

function wireEvents() {
  signaling.on("welcome", welcomed);
  signaling.on("refused", () =>
    askForToken(storedToken() ? "Ce jeton a été refusé. Collez un nouveau jeton." : ""),
  );
  signaling.on("connection", ({ online }) => {
    byId("connection-banner").hidden = online;
  });
  signaling.on("replaced", () => {
    byId("connection-banner").textContent =
      "Cette console a été ouverte ailleurs avec le même jeton. Rechargez la page pour la reprendre ici.";
    byId("connection-banner").hidden = false;
  });
  signaling.on("expert.state", expertStateChanged);
  signaling.on("call.offered", offered);
  signaling.on("offer.withdrawn", withdrawn);
  signaling.on("call.connected", connected);
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
  byId("wrapup-form").addEventListener("submit", finishWrapUp);
  bindTokenForm(byId("token-form"), {
    emptyMessage: () => "Le jeton est vide.",
    onSaved: () => {
      go("idle");
      signaling.start();
    },
  });
}

wireEvents();
signaling.start();
