// The expert's ring, synthesised with WebAudio so no sound file is needed.
// Browsers only let a page make sound after a user gesture: `unlock()` is called
// from the status buttons, which the expert presses before any call can ring.

const TONE_HZ = [440, 480];
const BURST_S = 0.4;
const GAP_S = 0.2;
const CYCLE_S = 3;
const VOLUME = 0.12;

export class RingTone {
  constructor() {
    this.context = null;
    this.timer = null;
  }

  unlock() {
    if (!this.context) {
      const AudioContextClass = window.AudioContext || window.webkitAudioContext;
      if (!AudioContextClass) return;
      this.context = new AudioContextClass();
    }
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
  }

  start() {
    this.stop();
    if (!this.context) return;
    this.ringOnce();
    this.timer = setInterval(() => this.ringOnce(), CYCLE_S * 1000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // Two short bursts of a dual tone, like a desk phone.
  ringOnce() {
    const context = this.context;
    const start = context.currentTime + 0.05;
    for (const offset of [0, BURST_S + GAP_S]) {
      const gain = context.createGain();
      gain.gain.setValueAtTime(0, start + offset);
      gain.gain.linearRampToValueAtTime(VOLUME, start + offset + 0.02);
      gain.gain.setValueAtTime(VOLUME, start + offset + BURST_S - 0.02);
      gain.gain.linearRampToValueAtTime(0, start + offset + BURST_S);
      gain.connect(context.destination);
      for (const frequency of TONE_HZ) {
        const oscillator = context.createOscillator();
        oscillator.frequency.value = frequency;
        oscillator.connect(gain);
        oscillator.start(start + offset);
        oscillator.stop(start + offset + BURST_S);
      }
    }
  }
}
