// WebRTC without the page: this page's camera and microphone, and one
// RTCPeerConnection with one other participant of a call.
//
// Rules that keep both ends of a pair in step:
// 1. Only the side told to offer (`offer_to` in call.connected or call.participants)
//    offers; the other waits for the offer.
// 2. Whoever receives an offer answers it on a fresh RTCPeerConnection. The server
//    announces call.connected again when a participant comes back after losing its
//    connection (or reloading its page); the offering side then offers anew, and the
//    other must not try to renegotiate a session its peer has forgotten.
// 3. Everything a pair does (offer, answer, candidates) runs in arrival order, one
//    step at a time: a candidate never reaches a connection older than its offer.

const MEDIA_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true },
  video: {
    width: { min: 320, ideal: 640, max: 640 },
    height: { min: 240, ideal: 480, max: 480 },
  },
};

// The camera and microphone, opened once per call and shared by every pair.
export class LocalMedia {
  // `onStatus("no_camera")` lets the page say in words that the others see nothing.
  constructor({ onStatus = () => {} } = {}) {
    this.onStatus = onStatus;
    this.stream = null;
    this.ready = null;
    this.closed = false;
  }

  open() {
    if (!this.ready) this.ready = this.acquire();
    return this.ready;
  }

  async acquire() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(MEDIA_CONSTRAINTS);
    } catch (error) {
      // The call can go on in one direction: the others still see and hear nothing
      // from us, but we see them, and the page says why.
      console.error("camera or microphone unavailable", error);
      this.onStatus("no_camera");
      stream = new MediaStream();
    }
    if (this.closed) {
      stream.getTracks().forEach((track) => track.stop());
      return null;
    }
    this.stream = stream;
    return stream;
  }

  close() {
    this.closed = true;
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.stream = null;
  }
}

// One peer connection with one participant. `send(type, fields)` sends rtc.sdp or
// rtc.ice to that participant; `localStream()` resolves to what to send, or to null
// to receive only (a supervisor).
export class PeerLink {
  constructor({ key, iceServers, localStream, send, onTrack, onState, onNegotiated }) {
    Object.assign(this, { key, iceServers, localStream, send, onTrack, onState, onNegotiated });
    this.pc = null;
    this.pendingCandidates = [];
    this.closed = false;
    this.steps = Promise.resolve();
  }

  // Runs `step` after the ones before it (rule 3).
  enqueue(what, step) {
    this.steps = this.steps
      .then(() => (this.closed ? undefined : step()))
      .catch((error) => console.error(`${what} with ${this.key} failed`, error));
    return this.steps;
  }

  offer() {
    return this.enqueue("offer", async () => {
      // Candidates still queued belong to an earlier session of the other side.
      this.pendingCandidates = [];
      const stream = await this.localStream();
      if (this.closed) return;
      this.closePeerConnection();
      const pc = this.createPeerConnection(stream);
      await pc.setLocalDescription(await pc.createOffer());
      this.sendDescription(pc);
    });
  }

  receiveDescription(description) {
    return this.enqueue(`${description.type}`, async () => {
      if (description.type === "offer") {
        const stream = await this.localStream();
        if (this.closed) return;
        // A new offer means a new session on the other side: start clean.
        this.closePeerConnection();
        const pc = this.createPeerConnection(stream);
        await pc.setRemoteDescription(description);
        await this.flushCandidates(pc);
        await pc.setLocalDescription(await pc.createAnswer());
        this.sendDescription(pc);
      } else if (description.type === "answer" && this.pc && this.pc.signalingState === "have-local-offer") {
        const pc = this.pc;
        await pc.setRemoteDescription(description);
        await this.flushCandidates(pc);
      }
    });
  }

  receiveCandidate(candidate) {
    return this.enqueue("ICE candidate", async () => {
      if (!this.pc || !this.pc.remoteDescription) {
        this.pendingCandidates.push(candidate);
        return;
      }
      await this.addCandidate(this.pc, candidate);
    });
  }

  createPeerConnection(stream) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const tracks = stream ? stream.getTracks() : [];
    for (const track of tracks) pc.addTrack(track, stream);
    // Without a local track of a kind we still want to receive that kind.
    for (const kind of ["audio", "video"]) {
      if (!tracks.some((track) => track.kind === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    pc.addEventListener("icecandidate", (event) => {
      if (pc !== this.pc) return;
      const candidate = event.candidate && event.candidate.candidate ? event.candidate.toJSON() : null;
      this.send("rtc.ice", { candidate });
    });
    pc.addEventListener("track", (event) => {
      if (pc !== this.pc) return;
      this.onTrack(event.streams[0] || new MediaStream([event.track]));
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc === this.pc) this.iceStateChanged(pc.iceConnectionState);
    });
    pc.addEventListener("signalingstatechange", () => {
      if (pc === this.pc && pc.signalingState === "stable") this.onNegotiated(this);
    });
    this.onState("connecting");
    return pc;
  }

  iceStateChanged(state) {
    if (state === "connected" || state === "completed") this.onState("connected");
    else if (state === "disconnected") this.onState("unstable");
    else if (state === "failed") this.onState("failed");
  }

  // Totals over the inbound RTP streams, which show whether media really flows.
  // What arrives from this peer. Besides the counts the tiles show, the audio's
  // concealed samples (what the decoder had to invent: audio that broke up) and losses
  // tell an operator or a benchmark how a slow link treats the citizen's voice.
  async stats() {
    const totals = {
      framesDecoded: 0,
      framesPerSecond: 0,
      audioPacketsReceived: 0,
      audioPacketsLost: 0,
      audioSamplesReceived: 0,
      audioSamplesConcealed: 0,
      bytesReceived: 0,
    };
    if (!this.pc) return totals;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== "inbound-rtp") return;
      totals.bytesReceived += entry.bytesReceived || 0;
      if (entry.kind === "video") {
        totals.framesDecoded += entry.framesDecoded || 0;
        totals.framesPerSecond += entry.framesPerSecond || 0;
      }
      if (entry.kind === "audio") {
        totals.audioPacketsReceived += entry.packetsReceived || 0;
        totals.audioPacketsLost += entry.packetsLost || 0;
        totals.audioSamplesReceived += entry.totalSamplesReceived || 0;
        totals.audioSamplesConcealed += entry.concealedSamples || 0;
      }
    });
    return totals;
  }

  // The senders that carry a track, by kind: what an uplink budget can limit.
  sendersByKind() {
    const senders = {};
    if (!this.pc) return senders;
    for (const sender of this.pc.getSenders()) {
      if (sender.track) senders[sender.track.kind] = sender;
    }
    return senders;
  }

  async flushCandidates(pc) {
    const queued = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of queued) await this.addCandidate(pc, candidate);
  }

  async addCandidate(pc, candidate) {
    try {
      // No argument marks the end of the remote candidates.
      if (candidate === null) await pc.addIceCandidate();
      else await pc.addIceCandidate(candidate);
    } catch (error) {
      // A candidate of an older session of the other side: harmless.
      console.warn("ICE candidate ignored", error);
    }
  }

  sendDescription(pc) {
    const { type, sdp } = pc.localDescription;
    this.send("rtc.sdp", { description: { type, sdp } });
  }

  closePeerConnection() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  close() {
    this.closed = true;
    this.closePeerConnection();
  }
}
