// Sentences of the kiosk that depend on numbers and dates; each takes the
// Translator so the same rules serve every language.

const DAY_MS = 86_400_000;

export function positionText(tr, position) {
  if (position <= 0) return tr.t("waiting.position_next");
  return tr.t("waiting.position", { ordinal: tr.ordinal(position) });
}

// Rounded outward to whole minutes: "between 2 and 5 minutes" is easier to
// read than seconds, and a range that errs long is kinder than one that errs short.
export function waitRangeText(tr, minSeconds, maxSeconds) {
  if (minSeconds == null || maxSeconds == null) return tr.t("wait.unknown");
  if (maxSeconds < 60) return tr.t("wait.under_one");
  const low = Math.floor(minSeconds / 60);
  const high = Math.ceil(maxSeconds / 60);
  if (low < 1) return tr.plural("wait.under", high);
  if (low >= high) return tr.plural("wait.about", high);
  return tr.t("wait.range", { min: low, max: high });
}

function timeOfDay(tr, date) {
  if (tr.language === "fr") {
    return `${date.getHours()} h ${String(date.getMinutes()).padStart(2, "0")}`;
  }
  return new Intl.DateTimeFormat(tr.language, { hour: "numeric", minute: "2-digit" }).format(date);
}

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

// "Opens Monday at 9:00", in the kiosk's own time zone.
export function nextOpeningText(tr, unixSeconds, now = new Date()) {
  if (unixSeconds == null) return tr.t("opening.unknown");
  const opening = new Date(unixSeconds * 1000);
  const time = timeOfDay(tr, opening);
  const days = Math.round((startOfDay(opening) - startOfDay(now)) / DAY_MS);
  if (days <= 0) return tr.t("opening.today", { time });
  if (days === 1) return tr.t("opening.tomorrow", { time });
  if (days < 7) {
    const day = new Intl.DateTimeFormat(tr.language, { weekday: "long" }).format(opening);
    return tr.t("opening.weekday", { day, time });
  }
  const date = new Intl.DateTimeFormat(tr.language, { day: "numeric", month: "long" }).format(opening);
  return tr.t("opening.date", { date, time });
}
