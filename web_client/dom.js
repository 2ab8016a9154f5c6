// Small DOM helpers shared by the pages.

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

// Build an element: `h("button", {class: "big", onclick}, "text", child)`.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "html") element.innerHTML = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

// Show one `<section data-screen>` of the page and hide the others. Focus goes to
// `focusTarget` (or the screen's heading) so keyboard and screen-reader users land
// on the new content.
export function showScreen(name, focusTarget) {
  let shown = null;
  for (const screen of document.querySelectorAll("[data-screen]")) {
    screen.hidden = screen.dataset.screen !== name;
    if (!screen.hidden) shown = screen;
  }
  const target = focusTarget || (shown && shown.querySelector("h1, h2"));
  if (target) {
    if (!target.matches("button, input, textarea, select, a")) target.tabIndex = -1;
    target.focus({ preventScroll: false });
  }
}

// Say something to screen-reader users through the page's polite live region.
// Clearing first makes the same sentence be announced again; a timer (not an
// animation frame) also runs when the console sits in a background tab.
const ANNOUNCE_DELAY_MS = 50;

export function announce(text) {
  const region = byId("live-region");
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, ANNOUNCE_DELAY_MS);
}
