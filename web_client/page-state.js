// `window.visio`: what the page is doing, in a form that tests and people
// debugging a kiosk from the devtools can read without knowing the DOM.

const NO_MEDIA = Object.freeze({ framesDecoded: 0, audioPacketsReceived: 0 });

export function exposePageState({ state, signaling, currentMedia = () => null }) {
  const visio = {
    state,
    lastMessage: null,
    call: null,
    stats() {
      const media = currentMedia();
      return media ? media.stats() : Promise.resolve({ ...NO_MEDIA });
    },
  };
  signaling.on("*", (message) => {
    visio.lastMessage = message;
  });
  window.visio = visio;
  return visio;
}
