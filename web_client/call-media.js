// The media of a call seen as a room: one peer connection per other participant
// (a mesh), one tile per participant who sends media, and the kiosk's uplink budget.
//
// Rules this module keeps:
// 1. Participants are named `<role>:<id>` (their key). SDP and ICE go out with `to`
//    set to the key, and come in with `sender`; a message from someone new starts an
//    answering connection with them. A server that predates rooms names nobody: its
//    call.connected is read as a room of two, and nothing carries `to`.
// 2. A call announced again (after a reconnection) keeps its camera, tiles and the
//    connections it answers; the connections it must offer are rebuilt (rtc.js).
// 3. A participant with `sends_media: false` (a supervisor) gets no tile and is
//    expected to send nothing; a page told `send_media: false` opens no camera and
//    only receives.
// 4. A kiosk shares `uplink_kbps` across every connection it sends on: audio first,
//    the rest split evenly for video, applied with RTCRtpSender.setParameters each
//    time a connection is negotiated or a participant joins or leaves.
// 5. While the kiosk's device agent uploads a scan (`device.progress` "uploading"
//    with its `upload_kbps`), that pace is taken out of the budget first: the link
//    carries the upload beside the call, never in front of its audio.

import { LocalMedia, PeerLink } from "/static/rtc.js";
import { h } from "/static/dom.js";

const AUDIO_KBPS = 32;
const STATS_INTERVAL_MS = 1_000;
// A tile whose decoded-frame count has not moved for this long shows as stalled.
const STALLED_AFTER_MS = 3_000;
const ROLES = new Set(["kiosk", "expert", "interpreter", "supervisor"]);

export function partyKey(party) {
  return party.key || `${party.role}:${party.id}`;
}

export function roleOfKey(key) {
  const role = String(key).split(":", 1)[0];
  return ROLES.has(role) ? role : "expert";
}

// The room a call.connected describes (rule 1).
export function roomOf(message, myRole) {
  if (message.participants && message.participants.length > 0) {
    return {
      you: message.you,
      participants: message.participants.map((party) => ({ ...party, key: partyKey(party) })),
      offerTo: message.offer_to || [],
      keyed: true,
    };
  }
  const peer = { ...message.peer, key: partyKey(message.peer) };
  const you = message.you || `${myRole}:self`;
  return {
    you,
    participants: [{ role: myRole, id: "self", name: "", key: you }, peer],
    offerTo: message.initiator ? [peer.key] : [],
    keyed: false,
  };
}

// The bitrates each sending connection gets (rule 4), in kbit/s.
export function shareUplink(uplinkKbps, connections) {
  if (uplinkKbps == null || connections <= 0) return null;
  const audio = Math.min(AUDIO_KBPS, Math.floor(uplinkKbps / connections));
  const video = Math.max(0, Math.floor((uplinkKbps - audio * connections) / connections));
  return { uplink_kbps: uplinkKbps, connections, audio_kbps: audio, video_kbps: video };
}

export class CallMesh {
  // `stage`: where tiles go; `mainRoles`: whose tiles are drawn large (on the kiosk
  // the expert and the interpreter, whose signing must be seen; on the console the
  // kiosk; null: all alike), the first of them being the one whose connection
  // `onStatus(status)` hears about ("connecting" | "connected" | "unstable" |
  // "failed" | "no_camera"); `describe(party, isSelf)` gives {name, role} in words;
  // `onFailure(key)` hears that a connection failed for good.
  constructor({ signaling, call, role, stage, mainRoles = null, describe, onStatus = () => {}, onFailure = () => {} }) {
    Object.assign(this, { signaling, call, role, stage, mainRoles, describe, onStatus, onFailure });
    this.you = `${role}:self`;
    this.keyed = false;
    this.iceServers = [];
    this.sendMedia = true;
    this.uplinkKbps = null;
    this.uploads = new Map();
    this.plan = null;
    this.participants = new Map();
    this.departed = new Set();
    this.links = new Map();
    this.tiles = new Map();
    this.local = new LocalMedia({ onStatus: (status) => this.onStatus(status) });
    this.localTile = null;
    this.closed = false;
    this.unsubscribe = [
      signaling.on("rtc.sdp", (message) => this.relayed(message, (link) => link.receiveDescription(message.description))),
      signaling.on("rtc.ice", (message) => this.relayed(message, (link) => link.receiveCandidate(message.candidate))),
      signaling.on("device.progress", (message) => this.deviceProgressed(message)),
    ];
    this.statsTimer = setInterval(() => this.refreshTiles(), STATS_INTERVAL_MS);
    this.buildStage();
  }

  // call.connected, the first time or again (rule 2).
  announce(message) {
    const room = roomOf(message, this.role);
    this.you = room.you;
    this.keyed = room.keyed;
    this.iceServers = message.ice_servers || [];
    for (const link of this.links.values()) link.iceServers = this.iceServers;
    this.sendMedia = message.send_media !== false;
    this.uplinkKbps = message.uplink_kbps ?? null;
    this.stage.dataset.you = this.you;
    this.setParticipants(room.participants);
    if (this.sendMedia) {
      this.local.open().then((stream) => this.showLocal(stream));
    }
    for (const key of room.offerTo) this.linkWith(key).offer();
    this.applyBudget();
  }

  // call.participants: someone joined or left.
  participantsChanged(message) {
    const participants = message.participants.map((party) => ({ ...party, key: partyKey(party) }));
    if (message.change === "left" && message.party) this.departed.add(partyKey(message.party));
    this.setParticipants(participants);
    for (const key of message.offer_to || []) this.linkWith(key).offer();
    this.applyBudget();
  }

  setParticipants(participants) {
    const present = new Map(participants.map((party) => [party.key, party]));
    for (const key of [...this.participants.keys(), ...this.links.keys(), ...this.tiles.keys()]) {
      if (!present.has(key)) this.drop(key);
    }
    this.participants = present;
    for (const party of participants) {
      this.departed.delete(party.key);
      if (party.key === this.you) continue;
      if (party.sends_media !== false) this.tileFor(party.key);
      else this.dropTile(party.key);
    }
    this.redraw();
  }

  drop(key) {
    const link = this.links.get(key);
    if (link) link.close();
    this.links.delete(key);
    this.dropTile(key);
  }

  dropTile(key) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    tile.querySelector("video").srcObject = null;
    tile.remove();
    this.tiles.delete(key);
    this.countTiles();
  }

  party(key) {
    return this.participants.get(key) || { key, role: roleOfKey(key), id: key.split(":").slice(1).join(":"), name: "" };
  }

  // A relayed SDP or ICE message for this call, routed to its pair (rule 1).
  relayed(message, handle) {
    if (message.call !== this.call || this.closed) return;
    const key = message.sender || this.soleRemote();
    if (!key || key === this.you || this.departed.has(key)) return;
    handle(this.linkWith(key));
  }

  soleRemote() {
    const others = [...this.participants.keys()].filter((key) => key !== this.you);
    return others.length === 1 ? others[0] : null;
  }

  linkWith(key) {
    let link = this.links.get(key);
    if (link) return link;
    link = new PeerLink({
      key,
      iceServers: this.iceServers,
      localStream: () => (this.sendMedia ? this.local.open() : Promise.resolve(null)),
      send: (type, fields) => {
        const to = this.keyed ? { to: key } : {};
        this.signaling.send(type, { call: this.call, ...fields, ...to });
      },
      onTrack: (stream) => this.showRemote(key, stream),
      onState: (state) => this.linkState(key, state),
      onNegotiated: (negotiated) => this.limit(negotiated),
    });
    this.links.set(key, link);
    if (this.party(key).sends_media !== false) this.tileFor(key);
    // One more connection to send on: everyone's share changes.
    this.applyBudget();
    return link;
  }

  linkState(key, state) {
    const tile = this.tiles.get(key);
    if (tile) tile.dataset.connection = state;
    if (this.isMain(key)) this.onStatus(state);
    if (state === "failed") this.onFailure(key);
  }

  // call.peer_state: a participant's signalling connection was lost, or is back.
  presence(key, state) {
    const tile = this.tiles.get(key);
    if (tile) tile.dataset.presence = state;
  }

  // The connection whose state the page reports: with the main role's participant,
  // or the only one there is.
  isMain(key) {
    if (this.mainRoles) return this.party(key).role === this.mainRoles[0];
    return this.links.size <= 1;
  }

  // ------------------------------------------------------------------ tiles

  buildStage() {
    this.mainArea = h("div", { class: "stage-main" });
    this.strip = h("div", { class: "stage-strip" });
    this.stage.replaceChildren(this.mainArea, this.strip);
    this.stage.dataset.call = this.call;
    this.resizeObserver = new ResizeObserver(() => this.arrange());
    this.resizeObserver.observe(this.mainArea);
  }

  tileFor(key) {
    let tile = this.tiles.get(key);
    if (tile) return tile;
    const party = this.party(key);
    tile = h(
      "figure",
      {
        class: "tile",
        "data-participant": key,
        "data-role": party.role,
        "data-testid": `tile-${key}`,
        "data-connection": "waiting",
        "data-video": "waiting",
        "data-frames-decoded": "0",
        "data-audio-packets": "0",
      },
      h("video", { autoplay: true, playsinline: true }),
      h("figcaption", { class: "tile-caption" }, h("span", { class: "tile-name" }), h("span", { class: "tile-role" })),
    );
    tile.progress = { frames: 0, movedAt: performance.now() };
    this.tiles.set(key, tile);
    this.place(tile);
    this.describeTile(tile, party);
    return tile;
  }

  place(tile) {
    const main = this.mainRoles ? this.mainRoles.includes(tile.dataset.role) : true;
    (main ? this.mainArea : this.strip).append(tile);
    this.countTiles();
  }

  // The main area's grid takes the number of columns that gives its 4:3 videos the
  // most room, for the area's size now: two tiles sit side by side in a wide area
  // and one above the other in a tall one.
  arrange() {
    const tiles = this.mainArea.querySelectorAll(".tile:not(.tile-self)").length;
    const { width, height } = this.mainArea.getBoundingClientRect();
    if (tiles === 0 || width === 0 || height === 0) return;
    let best = { columns: 1, area: -1 };
    for (let columns = 1; columns <= tiles; columns += 1) {
      const rows = Math.ceil(tiles / columns);
      const w = width / columns;
      const h = height / rows;
      const videoWidth = Math.min(w, (h * 4) / 3);
      const area = videoWidth * ((videoWidth * 3) / 4);
      if (area > best.area + 1) best = { columns, area };
    }
    this.mainArea.style.gridTemplateColumns = `repeat(${best.columns}, minmax(0, 1fr))`;
  }

  // Layouts depend on how many remote tiles each area holds.
  countTiles() {
    this.stage.dataset.tiles = String(this.tiles.size);
    this.mainArea.dataset.tiles = String(this.mainArea.querySelectorAll(".tile:not(.tile-self)").length);
    this.strip.hidden = this.strip.childElementCount === 0;
    this.arrange();
  }

  describeTile(tile, party) {
    const { name, role } = this.describe(party, tile === this.localTile);
    tile.querySelector(".tile-name").textContent = name;
    tile.querySelector(".tile-role").textContent = role;
    tile.querySelector("video").setAttribute("aria-label", [name, role].filter(Boolean).join(", "));
  }

  showRemote(key, stream) {
    const tile = this.tileFor(key);
    const video = tile.querySelector("video");
    if (video.srcObject !== stream) video.srcObject = stream;
  }

  showLocal(stream) {
    if (!stream || this.closed) return;
    if (!this.localTile) {
      this.localTile = h(
        "figure",
        { class: "tile tile-self", "data-participant": this.you, "data-local": "true", "data-testid": "tile-self" },
        h("video", { autoplay: true, playsinline: true, muted: true }),
        h("figcaption", { class: "tile-caption" }, h("span", { class: "tile-name" }), h("span", { class: "tile-role" })),
      );
      this.localTile.querySelector("video").muted = true;
      this.mainArea.append(this.localTile);
    }
    this.localTile.dataset.participant = this.you;
    this.localTile.querySelector("video").srcObject = stream;
    this.describeTile(this.localTile, this.party(this.you));
  }

  // Words follow a language switch or a name learnt late.
  redraw() {
    for (const [key, tile] of this.tiles) this.describeTile(tile, this.party(key));
    if (this.localTile) this.describeTile(this.localTile, this.party(this.you));
  }

  // Whether each tile's video really moves, for people (a stalled picture) and tests.
  async refreshTiles() {
    const now = performance.now();
    for (const [key, link] of this.links) {
      const tile = this.tiles.get(key);
      if (!tile) continue;
      const stats = await link.stats();
      tile.dataset.framesDecoded = String(stats.framesDecoded);
      tile.dataset.audioPackets = String(stats.audioPacketsReceived);
      if (stats.framesDecoded !== tile.progress.frames) {
        tile.progress = { frames: stats.framesDecoded, movedAt: now };
      }
      if (stats.framesDecoded === 0) tile.dataset.video = "waiting";
      else tile.dataset.video = now - tile.progress.movedAt > STALLED_AFTER_MS ? "stalled" : "playing";
    }
  }

  // ------------------------------------------------------------------ budget

  // Rule 5: a scan's upload reserves its pace while it lasts.
  deviceProgressed(message) {
    if (message.call !== this.call) return;
    const before = this.reservedKbps();
    if (message.state === "uploading" && message.upload_kbps > 0) this.uploads.set(message.key, message.upload_kbps);
    else this.uploads.delete(message.key);
    if (this.reservedKbps() !== before) this.applyBudget();
  }

  reservedKbps() {
    let kbps = 0;
    for (const pace of this.uploads.values()) kbps += pace;
    return kbps;
  }

  applyBudget() {
    if (this.uplinkKbps == null || !this.sendMedia) return;
    // Audio keeps its share on every connection whatever an upload takes.
    const floor = AUDIO_KBPS * Math.max(this.links.size, 1);
    const uplink = Math.max(this.uplinkKbps - this.reservedKbps(), floor);
    this.plan = shareUplink(uplink, this.links.size);
    this.stage.dataset.uplinkKbps = String(uplink);
    if (!this.plan) return;
    this.stage.dataset.audioKbps = String(this.plan.audio_kbps);
    this.stage.dataset.videoKbps = String(this.plan.video_kbps);
    for (const link of this.links.values()) this.limit(link);
  }

  // One change at a time per connection, always with the latest plan: a second
  // setParameters while the first is pending would carry a stale transaction.
  limit(link) {
    link.limiting = (link.limiting || Promise.resolve()).then(() => this.applyLimits(link));
    return link.limiting;
  }

  async applyLimits(link) {
    if (!this.plan || this.closed || link.closed) return;
    const kbps = { audio: this.plan.audio_kbps, video: this.plan.video_kbps };
    const applied = {};
    for (const [kind, sender] of Object.entries(link.sendersByKind())) {
      const parameters = sender.getParameters();
      // Before negotiation there is no encoding to limit; the connection's next
      // "stable" state applies the plan again.
      if (!parameters.encodings || parameters.encodings.length === 0) continue;
      parameters.encodings[0].maxBitrate = kbps[kind] * 1000;
      try {
        await sender.setParameters(parameters);
        applied[kind] = kbps[kind];
      } catch (error) {
        console.warn(`bitrate of ${kind} towards ${link.key} not set`, error);
      }
    }
    const tile = this.tiles.get(link.key);
    if (tile) {
      if ("audio" in applied) tile.dataset.audioKbps = String(applied.audio);
      if ("video" in applied) tile.dataset.videoKbps = String(applied.video);
    }
  }

  // What the senders carry now, read back from them.
  async budget() {
    const peers = {};
    for (const [key, link] of this.links) {
      const limits = {};
      for (const [kind, sender] of Object.entries(link.sendersByKind())) {
        const encoding = (sender.getParameters().encodings || [])[0];
        limits[`${kind}_kbps`] = encoding && encoding.maxBitrate ? encoding.maxBitrate / 1000 : null;
      }
      peers[key] = limits;
    }
    return { uplink_kbps: this.uplinkKbps, plan: this.plan, peers };
  }

  // ------------------------------------------------------------------ stats

  async statsByPeer() {
    const byPeer = {};
    for (const [key, link] of this.links) byPeer[key] = await link.stats();
    return byPeer;
  }

  async stats() {
    const totals = { framesDecoded: 0, audioPacketsReceived: 0 };
    for (const stats of Object.values(await this.statsByPeer())) {
      totals.framesDecoded += stats.framesDecoded;
      totals.audioPacketsReceived += stats.audioPacketsReceived;
    }
    return totals;
  }

  close() {
    this.closed = true;
    clearInterval(this.statsTimer);
    this.resizeObserver.disconnect();
    this.unsubscribe.forEach((off) => off());
    for (const key of [...this.links.keys(), ...this.tiles.keys()]) this.drop(key);
    this.local.close();
    if (this.localTile) this.localTile.querySelector("video").srcObject = null;
    this.stage.replaceChildren();
    for (const name of ["call", "you", "tiles", "uplinkKbps", "audioKbps", "videoKbps"]) delete this.stage.dataset[name];
  }
}

// The one call's media of a page. A call announced again keeps its mesh (rule 2);
// another call starts a new one.
export class MediaSlot {
  constructor(options) {
    this.options = options;
    this.mesh = null;
  }

  start(message) {
    if (!this.mesh || this.mesh.call !== message.call) {
      this.close();
      this.mesh = new CallMesh({ ...this.options, call: message.call });
    }
    this.mesh.announce(message);
    return this.mesh;
  }

  participantsChanged(message) {
    if (this.mesh && this.mesh.call === message.call) this.mesh.participantsChanged(message);
  }

  redraw() {
    if (this.mesh) this.mesh.redraw();
  }

  close() {
    if (this.mesh) this.mesh.close();
    this.mesh = null;
  }
}
