// Whether a service of the catalogue is open now. The catalogue comes with the
// welcome, which a kiosk may keep all day: the opening and closing times it
// carries let the home screen follow the hours without asking the server again.

export function isOpenNow(service, now = Date.now() / 1000) {
  if (service.open) return service.closes_at == null || now < service.closes_at;
  return service.next_opening != null && now >= service.next_opening;
}

// After the server refused a call because the service is closed.
export function markClosed(service, nextOpening) {
  service.open = false;
  service.next_opening = nextOpening ?? null;
}
