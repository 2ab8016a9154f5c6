// The media of one call: camera and microphone, one RTCPeerConnection, and the
// SDP/ICE exchange relayed by the signalling server.
//
// Rules that keep both sides in step:
// - only the party told `initiator: true` offers;
// - whoever receives an offer answers it on a fresh RTCPeerConnection. The server
//   announces call.connected again when a party comes back after losing its
//   connection (or reloading its page); the initiator then offers anew, and the
//   other side must not try to renegotiate a session its peer has forgotten.

const MEDIA_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true },
  video: {
    width: { min: 320, ideal: 640, max: 640 },
    height: { min: 240, ideal: 480, max: 480 },
  },
};

export class CallMedia {
  // `onStatus` receives "connecting" | "connected" | "unstable" | "failed" |
  // "no_camera" so the page can say it in words.
  constructor({ signaling, call, localVideo, remoteVideo, onStatus = () => {} }) {
    this.signaling = signaling;
    this.call = call;
    this.iceServers = [];
    this.localVideo = localVideo;
    this.remoteVideo = remoteVideo;
    this.onStatus = onStatus;
    this.localStream = null;
    this.cameraReady = null;
    this.pc = null;
    this.pendingCandidates = [];
    this.failureReported = false;
    this.closed = false;
    this.unsubscribe = [
      signaling.on("rtc.sdp", (message) => this.forThisCall(message, () => this.receiveDescription(message.description))),
      signaling.on("rtc.ice", (message) => this.forThisCall(message, () => this.receiveCandidate(message.candidate))),
    ];
  }

  // The answering party only opens its camera here: its connection is built
  // when the offer arrives. Called again for a call announced again, it keeps
  // the camera and, for the initiator, offers a new connection (with the fresh
  // TURN credentials of the new announcement).
  async start({ initiator, iceServers }) {
    this.iceServers = iceServers || [];
    this.onStatus("connecting");
    await this.openCamera();
    if (initiator && !this.closed) await this.offer();
  }

  remoteVideoElement() {
    return this.remoteVideo;
  }

  // Totals over the inbound RTP streams, which show whether media really flows.
  async stats() {
    const totals = { framesDecoded: 0, audioPacketsReceived: 0 };
    if (!this.pc) return totals;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== "inbound-rtp") return;
      if (entry.kind === "video") totals.framesDecoded += entry.framesDecoded || 0;
      if (entry.kind === "audio") totals.audioPacketsReceived += entry.packetsReceived || 0;
    });
    return totals;
  }

  close() {
    this.closed = true;
    this.unsubscribe.forEach((off) => off());
    this.closePeerConnection();
    if (this.localStream) this.localStream.getTracks().forEach((track) => track.stop());
    this.localStream = null;
    this.localVideo.srcObject = null;
    this.remoteVideo.srcObject = null;
  }

  forThisCall(message, handle) {
    if (message.call !== this.call || this.closed) return;
    handle().catch((error) => console.error(`${message.type} for ${this.call} failed`, error));
  }

  openCamera() {
    if (!this.cameraReady) this.cameraReady = this.acquireCamera();
    return this.cameraReady;
  }

  async acquireCamera() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(MEDIA_CONSTRAINTS);
    } catch (error) {
      // The call can go on in one direction: the other party still sees and
      // hears nothing from us, but we see them, and the page says why.
      console.error("camera or microphone unavailable", error);
      this.onStatus("no_camera");
      stream = new MediaStream();
    }
    if (this.closed) {
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    this.localStream = stream;
    this.localVideo.srcObject = stream;
  }

  createPeerConnection() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.failureReported = false;
    const tracks = this.localStream.getTracks();
    for (const track of tracks) pc.addTrack(track, this.localStream);
    // Without a local track of a kind we still want to receive that kind.
    for (const kind of ["audio", "video"]) {
      if (!tracks.some((track) => track.kind === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    pc.addEventListener("icecandidate", (event) => {
      if (pc !== this.pc) return;
      const candidate = event.candidate && event.candidate.candidate ? event.candidate.toJSON() : null;
      this.signaling.send("rtc.ice", { call: this.call, candidate });
    });
    pc.addEventListener("track", (event) => {
      if (pc !== this.pc) return;
      const stream = event.streams[0] || new MediaStream([event.track]);
      if (this.remoteVideo.srcObject !== stream) this.remoteVideo.srcObject = stream;
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc === this.pc) this.iceStateChanged(pc.iceConnectionState);
    });
    return pc;
  }

  closePeerConnection() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  iceStateChanged(state) {
    if (state === "connected" || state === "completed") this.onStatus("connected");
    else if (state === "disconnected") this.onStatus("unstable");
    else if (state === "failed") this.reportFailure();
  }

  reportFailure() {
    this.onStatus("failed");
    if (this.failureReported) return;
    this.failureReported = true;
    this.signaling
      .request("call.media_failed", { call: this.call, detail: "ICE connection failed" })
      .catch((error) => console.error("media failure not reported", error));
  }

  async offer() {
    // Candidates still queued belong to an earlier session of the other party.
    this.pendingCandidates = [];
    this.closePeerConnection();
    const pc = this.createPeerConnection();
    await pc.setLocalDescription(await pc.createOffer());
    this.sendDescription(pc);
  }

  async receiveDescription(description) {
    if (description.type === "offer") {
      await this.openCamera();
      if (this.closed) return;
      // A new offer means a new session on the other side: start clean.
      this.closePeerConnection();
      const pc = this.createPeerConnection();
      await pc.setRemoteDescription(description);
      await this.flushCandidates(pc);
      await pc.setLocalDescription(await pc.createAnswer());
      this.sendDescription(pc);
    } else if (description.type === "answer" && this.pc && this.pc.signalingState === "have-local-offer") {
      const pc = this.pc;
      await pc.setRemoteDescription(description);
      await this.flushCandidates(pc);
    }
  }

  async receiveCandidate(candidate) {
    if (!this.pc || !this.pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(this.pc, candidate);
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
      // A candidate of an older session of the other party: harmless.
      console.warn("ICE candidate ignored", error);
    }
  }

  sendDescription(pc) {
    const { type, sdp } = pc.localDescription;
    this.signaling.send("rtc.sdp", { call: this.call, description: { type, sdp } });
  }
}

// The one call's media of a page. A call announced again (after a reconnection)
// keeps its camera and media object: only the peer connection is rebuilt.
export class MediaSlot {
  constructor({ signaling, localVideo, remoteVideo, onStatus }) {
    Object.assign(this, { signaling, localVideo, remoteVideo, onStatus });
    this.media = null;
  }

  start({ call, iceServers, initiator }) {
    if (!this.media || this.media.call !== call) {
      this.close();
      const { signaling, localVideo, remoteVideo, onStatus } = this;
      this.media = new CallMedia({ signaling, call, localVideo, remoteVideo, onStatus });
    }
    this.media.start({ initiator, iceServers }).catch((error) => console.error("media did not start", error));
  }

  close() {
    if (this.media) this.media.close();
    this.media = null;
  }
}
