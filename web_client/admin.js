// Live view of every queue the admin or supervisor may see, pushed by the server
// on each change. The oldest wait keeps ticking between pushes so a stuck
// caller is visible even when nothing else happens.

import { SignalingClient } from "/static/signaling.js";
import { bindTokenForm, showTokenError, storedToken } from "/static/token.js";
import { exposePageState } from "/static/page-state.js";
import { byId, h, showScreen } from "/static/dom.js";
import { clock } from "/static/format.js";

const SUPERVISOR_ROLES = new Set(["admin", "supervisor"]);
const EXPERT_STATES = ["idle", "break", "offered", "in_call", "wrap_up", "away"];
// Past this wait the cell turns red: the caller has waited too long.
const LONG_WAIT_S = 300;

const signaling = new SignalingClient({ getToken: storedToken, getLanguage: () => "fr" });
const visio = exposePageState({ state: "live", signaling });

// Local receive time of the last push: ticking from it avoids depending on the
// agreement between the server's clock and this one.
let receivedAt = performance.now();
let queues = [];

function oldestWait(queue) {
  if (queue.waiting === 0) return 0;
  return queue.oldest_wait_s + (performance.now() - receivedAt) / 1000;
}

function row(queue) {
  const wait = oldestWait(queue);
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
    h("td", { class: "text" }, queue.open ? "Ouvert" : "Fermé"),
    h("td", { class: "waiting", "data-testid": `queue-waiting-${queue.service}` }, String(queue.waiting)),
    h("td", { class: "oldest" }, queue.waiting > 0 ? clock(wait) : "—"),
    h("td", {}, String(queue.offered)),
    h("td", {}, String(queue.connected)),
    ...EXPERT_STATES.map((state) => h("td", {}, String((queue.experts || {})[state] || 0))),
  );
}

function drawTable() {
  byId("queue-rows").replaceChildren(...queues.map(row));
}

function tickOldestWaits() {
  const rows = byId("queue-rows").rows;
  queues.forEach((queue, index) => {
    if (queue.waiting === 0 || !rows[index]) return;
    const wait = oldestWait(queue);
    rows[index].querySelector(".oldest").textContent = clock(wait);
    rows[index].classList.toggle("long-wait", wait >= LONG_WAIT_S);
  });
}

function queueStatus(message) {
  queues = message.services;
  receivedAt = performance.now();
  drawTable();
  const time = new Date(message.at * 1000).toLocaleTimeString("fr-FR");
  byId("updated").textContent = `Mis à jour à ${time}`;
}

async function welcomed(welcome) {
  if (!SUPERVISOR_ROLES.has(welcome.role)) {
    signaling.stop();
    askForToken("Ce jeton ne donne pas accès à la supervision.");
    return;
  }
  byId("identity").textContent = welcome.name;
  if (visio.state !== "live") {
    visio.state = "live";
    showScreen("live");
  }
  // A new connection has no subscription: ask again after every reconnection.
  try {
    await signaling.request("queue.subscribe");
    byId("live-error").textContent = "";
  } catch (error) {
    byId("live-error").textContent = `Abonnement aux files refusé : ${error.message}`;
  }
}

function askForToken(message) {
  visio.state = "provisioning";
  showScreen("provisioning", byId("token-input"));
  showTokenError(byId("token-form"), message);
}

signaling.on("welcome", welcomed);
signaling.on("refused", () =>
  askForToken(storedToken() ? "Ce jeton a été refusé. Collez un nouveau jeton." : ""),
);
signaling.on("connection", ({ online }) => {
  byId("connection-banner").hidden = online;
});
signaling.on("queue.status", queueStatus);
bindTokenForm(byId("token-form"), {
  emptyMessage: () => "Le jeton est vide.",
  onSaved: () => {
    visio.state = "live";
    showScreen("live");
    signaling.start();
  },
});
setInterval(tickOldestWaits, 1000);
signaling.start();
