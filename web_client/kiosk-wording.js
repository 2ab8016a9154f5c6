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

// The calendar fields of an instant in a time zone (the kiosk's own when none).
function fieldsIn(date, timeZone) {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone,
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    hourCycle: "h23",
  }).formatToParts(date);
  const field = (type) => Number(parts.find((part) => part.type === type).value);
  return { year: field("year"), month: field("month"), day: field("day"), hour: field("hour"), minute: field("minute") };
}

function timeOfDay(tr, date, timeZone) {
  if (tr.language === "fr") {
    const { hour, minute } = fieldsIn(date, timeZone);
    return `${hour} h ${String(minute).padStart(2, "0")}`;
  }
  return new Intl.DateTimeFormat(tr.language, { hour: "numeric", minute: "2-digit", timeZone }).format(date);
}

function dayNumber(date, timeZone) {
  const { year, month, day } = fieldsIn(date, timeZone);
  return Date.UTC(year, month - 1, day) / DAY_MS;
}

// Times are those of the service's zone: its hours are stated there, whatever
// the clock of the machine the page runs on says.
export function nextOpeningText(tr, unixSeconds, timeZone = undefined, now = new Date()) {
  if (unixSeconds == null) return tr.t("opening.unknown");
  const opening = new Date(unixSeconds * 1000);
  const time = timeOfDay(tr, opening, timeZone);
  const days = dayNumber(opening, timeZone) - dayNumber(now, timeZone);
  if (days <= 0) return tr.t("opening.today", { time });
  if (days === 1) return tr.t("opening.tomorrow", { time });
  if (days < 7) {
    const day = new Intl.DateTimeFormat(tr.language, { weekday: "long", timeZone }).format(opening);
    return tr.t("opening.weekday", { day, time });
  }
  const date = new Intl.DateTimeFormat(tr.language, { day: "numeric", month: "long", timeZone }).format(opening);
  return tr.t("opening.date", { date, time });
}
