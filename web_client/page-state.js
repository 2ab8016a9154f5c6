// `window.visio`: what the page is doing, in a form that tests and people
// debugging a kiosk from the devtools can read without knowing the DOM.
//
// - `state`: the screen shown; `call`: the call id, or null; `role`: the welcome's role;
// - `stats()`: inbound media totals over every peer connection of the call;
// - `statsByPeer()`: the same per participant key (`<role>:<id>`);
// - `budget()`: the kiosk's uplink budget and the bitrates applied to each sender.

const NO_MEDIA = Object.freeze({ framesDecoded: 0, audioPacketsReceived: 0 });

export function exposePageState({ state, signaling }) {
  let currentMedia = () => null;
  const visio = {
    state,
    lastMessage: null,
    call: null,
    role: null,
    // The page names the object that holds its call's media (a CallMesh).
    useMedia(getter) {
      currentMedia = getter;
    },
    stats() {
      const media = currentMedia();
      return media ? media.stats() : Promise.resolve({ ...NO_MEDIA });
    },
    statsByPeer() {
      const media = currentMedia();
      return media ? media.statsByPeer() : Promise.resolve({});
    },
    budget() {
      const media = currentMedia();
      return media ? media.budget() : Promise.resolve(null);
    },
  };
  signaling.on("*", (message) => {
    visio.lastMessage = message;
  });
  window.visio = visio;
  return visio;
}
