// Durations and clock times as people read them.

export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(total / 60);
  const rest = String(total % 60).padStart(2, "0");
  return `${String(minutes).padStart(2, "0")}:${rest}`;
}

// A countdown that follows the local clock, so a slow or busy page still shows
// the right remaining time. `onTick` gets the remaining seconds.
export function countdown(seconds, onTick) {
  const end = performance.now() + seconds * 1000;
  const tick = () => onTick(Math.max(0, (end - performance.now()) / 1000));
  tick();
  const timer = setInterval(tick, 250);
  return () => clearInterval(timer);
}
