// Pictograms drawn inline (no image files to fetch, colour follows the text).
// They repeat what the words say, for people who read French with difficulty.

function svg(body) {
  return `<svg class="picto" viewBox="0 0 64 64" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="4" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
}

export const PICTOGRAMS = {
  phone: svg('<path d="M18 6l10 12-6 6c3 7 9 13 16 16l6-6 12 10-6 10C30 54 10 34 8 12z" fill="currentColor" stroke="none"/>'),
  hangup: svg('<path d="M6 34c14-12 38-12 52 0l-4 10-12-4v-8c-6-2-14-2-20 0v8l-12 4z" fill="currentColor" stroke="none"/>'),
  family: svg('<circle cx="20" cy="14" r="7"/><circle cx="44" cy="14" r="7"/><circle cx="32" cy="34" r="5"/><path d="M8 58V34a12 12 0 0 1 24 0M32 34a12 12 0 0 1 24 0v24M24 58V48a8 8 0 0 1 16 0v10"/>'),
  health: svg('<path d="M24 6h16v18h18v16H40v18H24V40H6V24h18z"/>'),
  work: svg('<rect x="6" y="20" width="52" height="36" rx="4"/><path d="M22 20v-8a4 4 0 0 1 4-4h12a4 4 0 0 1 4 4v8M6 36h52"/>'),
  desk: svg('<circle cx="32" cy="16" r="9"/><path d="M14 44a18 18 0 0 1 36 0M4 44h56v14H4z"/>'),
  back: svg('<path d="M40 10L18 32l22 22"/>'),
  erase: svg('<path d="M22 12h34v40H22L6 32z"/><path d="M30 24l16 16M46 24L30 40"/>'),
  clock: svg('<circle cx="32" cy="32" r="26"/><path d="M32 16v16l10 8"/>'),
  exit: svg('<path d="M26 8H10v48h16M40 18l14 14-14 14M54 32H24"/>'),
  home: svg('<path d="M6 30L32 8l26 22M14 24v32h36V24"/>'),
  language: svg('<circle cx="32" cy="32" r="26"/><path d="M6 32h52M32 6c-10 14-10 38 0 52M32 6c10 14 10 38 0 52"/>'),
  warning: svg('<path d="M32 6l28 50H4z"/><path d="M32 26v14M32 48v1"/>'),
  check: svg('<circle cx="32" cy="32" r="26"/><path d="M20 33l8 8 16-18"/>'),
  text: svg('<path d="M8 10h48v32H28L16 54V42H8z"/><path d="M18 22h28M18 31h18"/>'),
  send: svg('<path d="M6 30L58 8 44 56 32 36z"/><path d="M32 36L58 8"/>'),
  interpreter: svg('<circle cx="20" cy="16" r="8"/><circle cx="46" cy="22" r="6"/><path d="M4 56V44a16 16 0 0 1 32 0v12M34 56V46a12 12 0 0 1 24 0v10"/><path d="M34 6h22v10H44l-5 5v-5h-5z"/>'),
  // A sheet face down on a scanner's glass, the light bar under it.
  scanner: svg('<path d="M6 38h52v16H6z"/><path d="M14 38l6-30h28l-6 30"/><path d="M14 46h36"/>'),
  printer: svg('<path d="M16 24V6h32v18"/><rect x="6" y="24" width="52" height="22" rx="4"/><path d="M16 38h32v20H16z"/><path d="M22 46h20M22 52h14"/>'),
  document: svg('<path d="M14 4h26l12 12v44H14z"/><path d="M40 4v12h12M22 30h22M22 38h22M22 46h14"/>'),
  add_page: svg('<path d="M10 4h24l10 10v22"/><path d="M10 4v52h22"/><path d="M48 40v20M38 50h20"/>'),
  share: svg('<circle cx="16" cy="32" r="8"/><circle cx="48" cy="14" r="8"/><circle cx="48" cy="50" r="8"/><path d="M23 28l18-10M23 36l18 10"/>'),
  code: svg('<rect x="4" y="16" width="56" height="32" rx="6"/><path d="M14 32h2M26 32h2M38 32h2M50 32h2"/>'),
  listen: svg('<path d="M10 40V32a22 22 0 0 1 44 0v8"/><rect x="6" y="38" width="12" height="18" rx="4"/><rect x="46" y="38" width="12" height="18" rx="4"/>'),
};

// Which pictogram stands for a service: guessed from its id and partner, with
// a generic "desk" for the others.
export function servicePictogram(service) {
  const words = `${service.id} ${service.partner}`.toLowerCase();
  if (/caf|famil|alloc/.test(words)) return PICTOGRAMS.family;
  if (/cpam|ameli|sant|health|maladie/.test(words)) return PICTOGRAMS.health;
  if (/travail|emploi|job|work/.test(words)) return PICTOGRAMS.work;
  return PICTOGRAMS.desk;
}
