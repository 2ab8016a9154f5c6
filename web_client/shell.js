// The page shell: what every page does before and around its own work.
//
// It keeps the page's token (one storage key per page), connects and reconnects,
// checks that the welcome's role fits the page, asks for a new token when the server
// refuses this one (wrong role, expired, unknown), says when the connection is lost,
// when the server is unavailable and when the same token was opened elsewhere
// (close code 4000), and switches the page's language. Each page gives hooks for
// what it must do at those moments, and draws everything else itself.
//
// Markup it relies on: `#connection-banner`, a `[data-screen=provisioning]` section
// holding `#token-form` (a textarea and `[data-role=token-error]`), and optionally
// `#language-button` with a `#language-name` inside.

import { SignalingClient } from "/static/signaling.js";
import { Translator } from "/static/i18n.js";
import { TokenStore } from "/static/token.js";
import { exposePageState } from "/static/page-state.js";
import { byId, showScreen } from "/static/dom.js";

const LANGUAGES = ["fr", "en"];
const DEFAULT_LANGUAGE = "fr";

export class PageShell {
  // `page`: kiosk | expert | interpreter | admin (the token's key and the shell's
  // words); `roles`: the welcome roles this page serves; `rememberLanguage`: a
  // console keeps its user's language, a kiosk greets each visitor in French.
  constructor({ page, roles, state, rememberLanguage = true, hooks = {} }) {
    this.page = page;
    this.roles = new Set(roles);
    this.rememberLanguage = rememberLanguage;
    this.hooks = {
      welcome: () => {},
      signedOut: () => {},
      provisioned: () => {},
      replaced: () => {},
      redraw: () => {},
      ...hooks,
    };
    this.tokens = new TokenStore(page, this.roles);
    this.tr = new Translator();
    this.signaling = new SignalingClient({
      getToken: () => this.tokens.get(),
      getLanguage: () => this.tr.language,
    });
    this.visio = exposePageState({ state, signaling: this.signaling });
    this.banner = null;
    this.tokenError = null;
  }

  // Loads the strings and wires the shared markup; `connect()` follows once the
  // page has registered its own handlers.
  async start() {
    await this.tr.use(this.initialLanguage());
    this.wire();
    this.drawLanguageButton();
  }

  connect() {
    this.signaling.start();
  }

  initialLanguage() {
    if (!this.rememberLanguage) return DEFAULT_LANGUAGE;
    const kept = localStorage.getItem(this.languageKey());
    return LANGUAGES.includes(kept) ? kept : DEFAULT_LANGUAGE;
  }

  languageKey() {
    return `visio.language.${this.page}`;
  }

  async useLanguage(language) {
    if (language === this.tr.language) return;
    await this.tr.use(language);
    if (this.rememberLanguage) localStorage.setItem(this.languageKey(), language);
    this.drawLanguageButton();
    this.drawBanner();
    this.drawTokenError();
    this.hooks.redraw();
  }

  // A word of the shell, the page's own wording first (`shell.kiosk.replaced`),
  // then the common one (`shell.replaced`).
  word(name, params = {}) {
    const own = `shell.${this.page}.${name}`;
    return this.tr.t(this.tr.has(own) ? own : `shell.${name}`, params);
  }

  wire() {
    const signaling = this.signaling;
    // No form of these pages posts anything: each is handled by its module. One met
    // between two screens, before its module is wired, must not reload the page.
    document.addEventListener("submit", (event) => event.preventDefault());
    signaling.on("welcome", (welcome) => this.welcomed(welcome));
    signaling.on("refused", ({ reason }) => {
      if (!this.tokens.get()) this.askForToken(null);
      else this.askForToken(/expired/i.test(reason || "") ? "expired" : "refused");
    });
    signaling.on("connection", ({ online }) => this.setBanner(online ? null : "lost"));
    signaling.on("retrying", ({ code }) => {
      this.setBanner(code === "service_unavailable" ? "unavailable" : "lost");
    });
    signaling.on("replaced", () => {
      this.setBanner("replaced");
      this.hooks.replaced();
    });
    const form = byId("token-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = form.querySelector("textarea");
      const token = input.value.trim();
      if (!token) {
        this.showTokenError("empty");
        input.focus();
        return;
      }
      this.tokens.set(token);
      input.value = "";
      this.showTokenError(null);
      this.hooks.provisioned();
      signaling.start();
    });
    const languageButton = document.getElementById("language-button");
    if (languageButton) {
      languageButton.addEventListener("click", () =>
        this.useLanguage(this.tr.language === "fr" ? "en" : "fr"),
      );
    }
  }

  welcomed(welcome) {
    if (!this.roles.has(welcome.role)) {
      this.signaling.stop();
      this.askForToken("wrong_role");
      return;
    }
    this.setBanner(null);
    this.visio.role = welcome.role;
    document.body.dataset.role = welcome.role;
    this.hooks.welcome(welcome);
  }

  // The page drops what it was doing (its call, its media) before the token form
  // shows: whoever provisions the machine next starts clean.
  askForToken(errorName) {
    this.hooks.signedOut();
    this.visio.state = "provisioning";
    this.visio.call = null;
    showScreen("provisioning", byId("token-input"));
    this.showTokenError(errorName);
  }

  showTokenError(name) {
    this.tokenError = name;
    this.drawTokenError();
  }

  drawTokenError() {
    const error = byId("token-form").querySelector("[data-role=token-error]");
    error.textContent = this.tokenError ? this.word(this.tokenError) : "";
  }

  // `name`: lost | unavailable | replaced, or null to hide the banner. A replaced
  // page stays replaced: reconnecting would take the token back from the newer one.
  setBanner(name) {
    if (this.banner === "replaced" && name !== "replaced") return;
    this.banner = name;
    this.drawBanner();
  }

  drawBanner() {
    const banner = byId("connection-banner");
    banner.hidden = !this.banner;
    banner.dataset.state = this.banner || "online";
    if (this.banner) banner.textContent = this.word(this.banner);
  }

  drawLanguageButton() {
    const button = document.getElementById("language-button");
    if (!button) return;
    byId("language-name").textContent = this.tr.t("language.other_name");
    button.lang = this.tr.t("language.other_code");
  }
}
