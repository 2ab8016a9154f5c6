// Interface strings of every page, from /static/i18n/<language>.json (one file per
// language; keys are prefixed by the page or module that uses them).
//
// Static text is marked in the HTML with `data-i18n="key"` (text content) or
// `data-i18n-attr="attribute:key,..."`; dynamic text asks `t()`.

export class Translator {
  constructor() {
    this.language = "fr";
    this.strings = {};
    this.cache = new Map();
  }

  async use(language) {
    if (!this.cache.has(language)) {
      const response = await fetch(`/static/i18n/${language}.json`);
      if (!response.ok) throw new Error(`strings for ${language}: HTTP ${response.status}`);
      this.cache.set(language, await response.json());
    }
    this.language = language;
    this.strings = this.cache.get(language);
    document.documentElement.lang = language;
    this.apply(document);
  }

  has(key) {
    return typeof this.strings[key] === "string";
  }

  t(key, params = {}) {
    const template = this.strings[key];
    if (typeof template !== "string") {
      console.warn(`missing string ${key} (${this.language})`);
      return key;
    }
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  }

  // `key.one`, `key.other`... chosen by the language's plural rules for `count`.
  plural(key, count, params = {}) {
    const category = new Intl.PluralRules(this.language).select(count);
    const chosen = `${key}.${category}` in this.strings ? `${key}.${category}` : `${key}.other`;
    return this.t(chosen, { count, ...params });
  }

  // 1er, 2e / 1st, 2nd...
  ordinal(count) {
    const category = new Intl.PluralRules(this.language, { type: "ordinal" }).select(count);
    const chosen = `ordinal.${category}` in this.strings ? `ordinal.${category}` : "ordinal.other";
    return this.t(chosen, { count });
  }

  // A language named in the page's language: from the strings when they name it
  // (sign languages, which Intl often does not know), else from Intl.
  languageName(code) {
    if (!code) return "";
    if (this.has(`language_name.${code}`)) return this.t(`language_name.${code}`);
    try {
      const name = new Intl.DisplayNames([this.language], { type: "language" }).of(code);
      return name && name !== code ? name : code;
    } catch {
      return code;
    }
  }

  // A short name where space is tight (a tile, a chip): "LSF" rather than the
  // sign language's full name.
  languageShort(code) {
    return this.has(`language_short.${code}`) ? this.t(`language_short.${code}`) : this.languageName(code);
  }

  apply(root) {
    for (const element of root.querySelectorAll("[data-i18n]")) {
      element.textContent = this.t(element.dataset.i18n);
    }
    for (const element of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of element.dataset.i18nAttr.split(",")) {
        const [attribute, key] = pair.split(":");
        element.setAttribute(attribute.trim(), this.t(key.trim()));
      }
    }
  }
}
