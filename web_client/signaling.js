// WebSocket client of the visio-guichet signalling protocol.
//
// One instance per page. It authenticates with `hello` on every (re)connection,
// matches replies to requests by `id`, dispatches server events by `type`, and
// reconnects with backoff: the server recognises the token and resumes what it can.

const PING_INTERVAL_MS = 20_000;
const REQUEST_TIMEOUT_MS = 15_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;

// The server closes an older connection of the same kiosk or expert with this
// code when a newer one says hello: reconnecting would only fight the newer one.
const REPLACED_CLOSE_CODE = 4000;

// Close codes by which the server says "this token is not welcome" rather than
// "something broke": 1008 is the standard policy-violation code, 4000-4999 are
// application codes.
function isRefusalCloseCode(code) {
  return code === 1008 || (code >= 4000 && code <= 4999);
}

export class ProtocolError extends Error {
  constructor(code, reason, details = {}) {
    super(reason || code);
    this.name = "ProtocolError";
    this.code = code;
    this.details = details;
  }
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class SignalingClient {
  // `getToken` and `getLanguage` are read at each connection, so a new token or
  // a language switch is used by the next hello without rebuilding the client.
  constructor({ getToken, getLanguage = () => document.documentElement.lang || "fr" }) {
    this.getToken = getToken;
    this.getLanguage = getLanguage;
    this.handlers = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.socket = null;
    this.welcomed = false;
    this.stopped = true;
    this.backoffMs = BACKOFF_FIRST_MS;
    this.reconnectTimer = null;
    this.pingTimer = null;
  }

  // Register a handler for a server message type, or for the lifecycle events
  // "connection" ({online}), "refused" ({code, reason}), "retrying" ({code}: hello
  // failed for a reason that may pass) and "replaced" (the same token connected
  // elsewhere; this client stops); "*" sees every message.
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  start() {
    this.stopped = false;
    this.backoffMs = BACKOFF_FIRST_MS;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.closeSocket();
  }

  get online() {
    return this.welcomed;
  }

  // Send a request and wait for its typed reply; an `error` reply rejects with a
  // ProtocolError whose `.code` is the wire code.
  request(type, fields = {}) {
    if (!this.welcomed && type !== "hello") {
      return Promise.reject(new ProtocolError("disconnected", "not connected"));
    }
    return this.requestOn(this.socket, type, fields);
  }

  // Fire and forget: for the WebRTC relay messages, which get no reply.
  send(type, fields = {}) {
    if (this.welcomed) this.socket.send(JSON.stringify({ type, ...fields }));
  }

  requestOn(socket, type, fields) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError("timeout", `no reply to ${type}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  open() {
    const token = this.getToken();
    if (!token) {
      this.stopped = true;
      this.emit("refused", { code: "not_authenticated", reason: "no token" });
      return;
    }
    const socket = new WebSocket(socketUrl());
    this.socket = socket;
    socket.addEventListener("open", () => this.greet(socket, token));
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.closed(socket, event));
  }

  async greet(socket, token) {
    try {
      const language = this.getLanguage();
      const welcome = await this.requestOn(socket, "hello", { token, language });
      if (socket !== this.socket) return;
      this.welcomed = true;
      this.backoffMs = BACKOFF_FIRST_MS;
      this.startPinging();
      this.emit("connection", { online: true });
      this.emit("welcome", welcome);
    } catch (error) {
      if (socket !== this.socket) return;
      if (error.code === "not_authenticated" || error.code === "forbidden") {
        this.refuse(error.code, error.message);
      } else {
        // service_unavailable (the shared store is down), a timeout...: the page
        // says so while the backoff tries again.
        this.emit("retrying", { code: error.code });
        socket.close();
      }
    }
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null) return;
    this.emit("*", message);
    const waiting = message.id != null ? this.pending.get(message.id) : undefined;
    if (waiting) {
      this.pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.type === "error") {
        waiting.reject(new ProtocolError(message.code, message.reason, message.details || {}));
      } else {
        waiting.resolve(message);
      }
      return;
    }
    // The welcome is emitted by greet(), once the connection state is up to date.
    if (message.type !== "welcome") this.emit(message.type, message);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    const wasWelcomed = this.welcomed;
    this.socket = null;
    this.welcomed = false;
    this.stopPinging();
    this.failPending();
    if (wasWelcomed) this.emit("connection", { online: false });
    if (this.stopped) return;
    if (wasWelcomed && event.code === REPLACED_CLOSE_CODE) {
      this.stopped = true;
      this.emit("replaced", {});
      return;
    }
    if (!wasWelcomed && isRefusalCloseCode(event.code)) {
      this.refuse("not_authenticated", event.reason || `closed with code ${event.code}`);
      return;
    }
    this.scheduleReconnect();
  }

  refuse(code, reason) {
    this.stopped = true;
    this.closeSocket();
    this.emit("refused", { code, reason });
  }

  scheduleReconnect() {
    // Jitter spreads the reconnections of many kiosks after a server restart.
    const delay = this.backoffMs * (0.75 + Math.random() * 0.5);
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      // A connection that no longer answers is dead even if the browser has not
      // noticed yet; closing it starts the reconnection.
      const socket = this.socket;
      this.request("ping").catch((error) => {
        if (error.code === "timeout" && socket === this.socket) socket.close();
      });
    }, PING_INTERVAL_MS);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  failPending() {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new ProtocolError("disconnected", "connection lost"));
    }
    this.pending.clear();
  }

  closeSocket() {
    const socket = this.socket;
    this.socket = null;
    this.welcomed = false;
    this.stopPinging();
    this.failPending();
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
  }

  emit(type, payload) {
    for (const handler of this.handlers.get(type) || []) {
      try {
        handler(payload);
      } catch (error) {
        console.error(`handler of ${type} failed`, error);
      }
    }
  }
}
