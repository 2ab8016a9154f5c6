// Where a page keeps its JWT: localStorage, under a key of its own.
//
// Rules:
// 1. One key per page (`visio.token.kiosk`, `visio.token.expert`...): a console or an
//    admin page opened in a second tab of the kiosk's browser must not sign in with
//    the kiosk's token, nor replace it.
// 2. The token never enters a URL.
// 3. A token left under the old shared key (`visio.token`) is adopted once by the
//    first page whose roles it fits, so provisioned kiosks survive the upgrade.

const LEGACY_KEY = "visio.token";

// The claims of a JWT, read without checking it: only to route a legacy token to
// the page it was meant for. The server checks every token it is given.
function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return {};
  }
}

export class TokenStore {
  constructor(page, roles) {
    this.key = `visio.token.${page}`;
    this.roles = roles;
  }

  get() {
    const own = localStorage.getItem(this.key);
    if (own) return own;
    const legacy = localStorage.getItem(LEGACY_KEY);
    if (legacy && this.roles.has(claimsOf(legacy).role)) {
      localStorage.setItem(this.key, legacy);
      localStorage.removeItem(LEGACY_KEY);
      return legacy;
    }
    return "";
  }

  set(token) {
    localStorage.setItem(this.key, token);
  }
}
