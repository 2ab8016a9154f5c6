// Live view of every queue, running call and waiting interpreter request the admin or
// supervisor may see, pushed by the server on each change. Waits and call durations
// keep ticking between pushes so a stuck caller is visible even when nothing else
// happens.
//
// A supervisor can listen to a running call (`call.join`): it receives the
// participants' media and text, sends nothing, and writes to the expert on the
// whisper channel, which the kiosk never receives. An admin sees the same lists but
// cannot join.

import { PageShell } from "/static/shell.js";
import { MediaSlot, partyKey } from "/static/call-media.js";
import { textForCall } from "/static/call-text.js";
import { CallPeople } from "/static/call-people.js";
import { Whisper } from "/static/call-whisper.js";
import { announce, byId, h, showScreen } from "/static/dom.js";
import { clock } from "/static/format.js";
import { PICTOGRAMS } from "/static/pictograms.js";
import { devicePartWords } from "/static/documents-model.js";

const EXPERT_STATES = ["idle", "break", "offered", "in_call", "wrap_up", "away"];
// Past this wait the cell turns red: the caller has waited too long.
const LONG_WAIT_S = 300;
// After a reconnection the server announces the call again if the supervisor is
// still in it; past this delay the page joins again.
const REJOIN_WAIT_MS = 5_000;

const shell = new PageShell({
  page: "admin",
  roles: ["admin", "supervisor"],
  state: "live",
  hooks: {
    welcome: welcomed,
    signedOut: () => stopListening(),
    provisioned: () => goLive(),
    replaced: () => stopListening(),
    redraw: () => {
      drawAll();
      if (listening) drawListening();
      people.draw();
      media.redraw();
      if (text) text.redraw();
    },
  },
});
const { signaling, tr, visio } = shell;
const people = new CallPeople({ list: byId("people"), tr });
const media = new MediaSlot({
  signaling,
  role: "supervisor",
  stage: byId("call-stage"),
  mainRoles: null,
  describe: (party, isSelf) => people.describe(party, isSelf),
  onStatus: (status) => {
    byId("call-status").textContent = tr.t(`console.media.${status}`);
  },
});
visio.useMedia(() => media.mesh);

// Local receive time of the last push: ticking from it avoids depending on the
// agreement between the server's clock and this one.
let receivedAt = performance.now();
let updatedAt = null;
let queues = [];
let calls = [];
let requests = [];
let devices = [];
let role = null;
let listening = null;
let text = null;
let whisper = null;
let rejoinTimer = null;
let notice = null;

function since(seconds) {
  return seconds + (performance.now() - receivedAt) / 1000;
}

function serviceName(id) {
  const queue = queues.find((candidate) => candidate.service === id);
  return queue ? queue.name : id;
}

// ---------------------------------------------------------------------------
// Lists

function queueRow(queue) {
  const wait = queue.waiting > 0 ? since(queue.oldest_wait_s) : 0;
  const classes = [
    queue.open ? "is-open" : "is-closed",
    queue.waiting > 0 ? "has-waiting" : "",
    wait >= LONG_WAIT_S ? "long-wait" : "",
  ];
  return h(
    "tr",
    { "data-testid": `queue-row-${queue.service}`, class: classes.filter(Boolean).join(" ") },
    h("th", { scope: "row" }, queue.name),
    h("td", { class: "text" }, queue.partner),
    h("td", { class: "text" }, tr.t(queue.open ? "admin.open" : "admin.closed")),
    h("td", { class: "waiting", "data-testid": `queue-waiting-${queue.service}` }, String(queue.waiting)),
    h("td", { class: "oldest" }, queue.waiting > 0 ? clock(wait) : "—"),
    h("td", {}, String(queue.offered)),
    h("td", {}, String(queue.connected)),
    ...EXPERT_STATES.map((state) => h("td", {}, String((queue.experts || {})[state] || 0))),
  );
}

function participantsText(call) {
  return call.participants
    .map((party) => `${party.name} (${people.roleWords({ ...party, key: partyKey(party) })})`)
    .join(", ");
}

function callRow(call) {
  const action =
    role === "supervisor"
      ? h(
          "button",
          {
            type: "button",
            class: "button",
            "data-testid": `listen-${call.call}`,
            disabled: listening !== null,
            onclick: () => listen(call),
          },
          h("span", { html: PICTOGRAMS.listen }),
          tr.t("admin.calls.listen"),
          h("span", { class: "visually-hidden" }, ` — ${call.kiosk_name}`),
        )
      : "";
  return h(
    "tr",
    { "data-testid": `call-row-${call.call}`, "data-call": call.call },
    h("th", { scope: "row" }, serviceName(call.service)),
    h("td", { class: "text" }, call.kiosk_name),
    h("td", { class: "duration" }, clock(since(call.connected_s))),
    h("td", { class: "text participants" }, participantsText(call)),
    role === "supervisor" ? h("td", { class: "text" }, action) : null,
  );
}

function requestRow(request) {
  const call = calls.find((candidate) => candidate.call === request.for_call);
  const where = call ? `${serviceName(call.service)} — ${call.kiosk_name}` : request.for_call;
  return h(
    "tr",
    { "data-testid": `interpreter-request-${request.request}`, "data-state": request.state },
    h("th", { scope: "row" }, where),
    h("td", { class: "text" }, request.language ? tr.languageName(request.language) : tr.t("interpreter.any_language")),
    h("td", { class: "waited" }, clock(since(request.waited_s))),
    h("td", { class: "text" }, tr.t(`admin.requests.${request.state}`)),
  );
}

function deviceCell(health, name) {
  const { level, text } = devicePartWords(tr, health, name);
  // The part's look comes from the console's .device-part; a table cell keeps its
  // own display, so the part is a span inside it.
  return h(
    "td",
    { class: "text", "data-level": level, "data-testid": `device-${health.kiosk}-${name}` },
    h(
      "span",
      { class: "device-part", "data-level": level },
      h("span", { class: "device-dot", "aria-hidden": "true" }),
      h("span", { class: "device-words" }, text),
    ),
  );
}

function deviceRow(health) {
  const seen = health.at ? new Date(health.at * 1000).toLocaleTimeString(tr.language === "fr" ? "fr-FR" : "en-GB") : "—";
  return h(
    "tr",
    { "data-testid": `device-row-${health.kiosk}`, "data-online": String(health.online) },
    h("th", { scope: "row" }, health.name || health.kiosk),
    h("td", { class: "text" }, tr.t(health.online ? "admin.devices.online" : "admin.devices.offline")),
    deviceCell(health, "scanner"),
    deviceCell(health, "printer"),
    h("td", { class: "text" }, health.last_error || "—"),
    h("td", { class: "text" }, seen),
  );
}

function drawAll() {
  byId("queue-rows").replaceChildren(...queues.map(queueRow));
  byId("call-rows").replaceChildren(...calls.map(callRow));
  byId("request-rows").replaceChildren(...requests.map(requestRow));
  byId("device-rows").replaceChildren(...devices.map(deviceRow));
  byId("devices-empty").hidden = devices.length > 0;
  byId("calls-empty").hidden = calls.length > 0;
  byId("requests-empty").hidden = requests.length > 0;
  byId("calls-help").textContent = role === "admin" ? tr.t("admin.calls.admin_help") : "";
  byId("calls-action").hidden = role !== "supervisor";
  byId("updated").textContent = updatedAt
    ? tr.t("admin.live.updated", { time: updatedAt.toLocaleTimeString(tr.language === "fr" ? "fr-FR" : "en-GB") })
    : tr.t("admin.live.connecting");
  byId("live-notice").textContent = notice ? notice(tr) : "";
}

function tick() {
  const rows = byId("queue-rows").rows;
  queues.forEach((queue, index) => {
    if (queue.waiting === 0 || !rows[index]) return;
    const wait = since(queue.oldest_wait_s);
    rows[index].querySelector(".oldest").textContent = clock(wait);
    rows[index].classList.toggle("long-wait", wait >= LONG_WAIT_S);
  });
  const callRows = byId("call-rows").rows;
  calls.forEach((call, index) => {
    if (callRows[index]) callRows[index].querySelector(".duration").textContent = clock(since(call.connected_s));
  });
  const requestRows = byId("request-rows").rows;
  requests.forEach((request, index) => {
    if (requestRows[index]) requestRows[index].querySelector(".waited").textContent = clock(since(request.waited_s));
  });
}

function queueStatus(message) {
  queues = message.services;
  calls = message.calls || [];
  requests = message.interpreter_requests || [];
  devices = message.devices || [];
  receivedAt = performance.now();
  updatedAt = new Date(message.at * 1000);
  drawAll();
}

// ---------------------------------------------------------------------------
// Listening to a call (supervisor)

function goLive(focusTarget) {
  visio.state = "live";
  showScreen("live", focusTarget);
}

async function listen(call) {
  if (listening) return;
  listening = { call: call.call, summary: call, connected: null };
  notice = null;
  drawAll();
  try {
    const reply = await signaling.request("call.join", { call: call.call });
    if (reply.type === "call.connected") connected(reply);
  } catch (error) {
    listening = null;
    notice = (t) => t.t("admin.listening.join_failed", { why: error.message || error.code });
    drawAll();
  }
}

// A supervisor is in the call this announces, even one the page did not ask for
// (after a reload, the server may announce the call the supervisor was in).
function connected(message) {
  if (role !== "supervisor") return;
  if (!listening) listening = { call: message.call, summary: { call: message.call }, connected: null };
  if (message.call !== listening.call) return;
  clearTimeout(rejoinTimer);
  listening.connected = message;
  visio.call = message.call;
  const mesh = media.start(message);
  people.update([...mesh.participants.values()], mesh.you);
  text = textForCall(text, message, mesh.you, {
    signaling,
    log: byId("rtt-log"),
    live: byId("rtt-live"),
    tr,
    nameOf: (key) => people.nameOf(key),
  });
  if (!whisper || whisper.call !== message.call) {
    if (whisper) whisper.close();
    whisper = new Whisper({
      signaling,
      call: message.call,
      log: byId("whisper-log"),
      form: byId("whisper-form"),
      tr,
      nameOf: (key) => people.nameOf(key),
      peer: () => (people.byRole("expert")[0] || {}).key || null,
      onMessage: () => announce(tr.t("whisper.received")),
    });
  }
  drawListening();
  if (visio.state !== "listening") {
    visio.state = "listening";
    showScreen("listening", byId("leave-button"));
  }
}

function drawListening() {
  const message = listening && listening.connected;
  if (!message) return;
  const kiosk = message.peer;
  byId("listening-title").textContent = tr.t("admin.listening.title", {
    service: serviceName(message.service),
    kiosk: [kiosk.name, kiosk.place].filter(Boolean).join(", "),
  });
}

function participantsChanged(message) {
  if (!listening || message.call !== listening.call) return;
  media.participantsChanged(message);
  people.update(message.participants, media.mesh ? media.mesh.you : null);
  if (message.change === "left" && text) text.participantLeft(partyKey(message.party));
}

async function leave() {
  const call = listening && listening.call;
  if (!call) return;
  try {
    await signaling.request("call.hangup", { call });
  } catch (error) {
    // Already over: the page goes back to the lists all the same.
    console.warn("leaving the call refused", error);
  }
  stopListening();
  goLive();
}

function callEnded(message) {
  if (!listening || message.call !== listening.call) return;
  stopListening();
  notice = (t) => t.t("admin.listening.ended");
  goLive();
  drawAll();
  announce(notice(tr));
}

function stopListening() {
  clearTimeout(rejoinTimer);
  listening = null;
  visio.call = null;
  media.close();
  if (text) text.close();
  text = null;
  if (whisper) whisper.close();
  whisper = null;
  people.clear();
  byId("call-status").textContent = "";
  drawAll();
}

// ---------------------------------------------------------------------------
// Connection

async function welcomed(welcome) {
  role = welcome.role;
  byId("identity").textContent = welcome.name;
  if (visio.state === "provisioning") goLive();
  drawAll();
  if (listening) {
    // The server announces the call again if this supervisor is still in it.
    const call = listening.summary;
    clearTimeout(rejoinTimer);
    rejoinTimer = setTimeout(() => {
      stopListening();
      listen(call);
    }, REJOIN_WAIT_MS);
  }
  // A new connection has no subscription: ask again after every reconnection.
  try {
    await signaling.request("queue.subscribe");
    byId("live-error").textContent = "";
  } catch (error) {
    byId("live-error").textContent = tr.t("admin.live.subscribe_failed", { why: error.message });
  }
}

async function main() {
  await shell.start();
  signaling.on("queue.status", queueStatus);
  signaling.on("call.connected", connected);
  signaling.on("call.participants", participantsChanged);
  signaling.on("call.ended", callEnded);
  byId("leave-button").addEventListener("click", leave);
  drawAll();
  setInterval(tick, 1000);
  shell.connect();
}

main();
