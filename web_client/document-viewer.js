// The expert's viewer of a case-file document: its pages as the server renders them
// (images and PDFs alike), page by page, zoomed and turned, and the verdict.
//
// Rules this module keeps:
// 1. Pages are fetched with the token in a header and shown through object URLs;
//    each URL is revoked when its page is replaced, and all of them when the viewer
//    closes: a closed viewer keeps no document in memory.
// 2. A page is fetched about as wide as it is drawn (times the screen's pixel
//    ratio), and again larger only when a zoom needs more pixels.
// 3. Only the last request for a page is drawn: a slow answer for a page the expert
//    has already left is thrown away.
// 4. A rejection needs a reason: one of the preset reasons, free words, or both.
//
// Markup: a <dialog> holding the elements named in `ELEMENTS`; keyboard: arrows or
// Page Up / Page Down change page, + and - zoom, R turns the page.

import { byId, h } from "/static/dom.js";
import { documentContent, pageImage } from "/static/documents-http.js";
import { reviewable } from "/static/documents-model.js";

const ZOOMS = [0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4];
const FIT_ZOOM_INDEX = 2;
const WIDTH_STEP = 400;
const MIN_WIDTH = 400;
const MAX_WIDTH = 2400;

export class DocumentViewer {
  // `onReview(document, verdict, reason)` sends the verdict and resolves when the
  // server took it; `getToken()` gives the page's token; `describe(document)` the
  // words of its state.
  constructor({ dialog, tr, getToken, onReview, describe }) {
    Object.assign(this, { dialog, tr, getToken, onReview, describe });
    this.document = null;
    this.page = 1;
    this.zoomIndex = FIT_ZOOM_INDEX;
    this.rotation = 0;
    this.images = new Map();
    this.loading = 0;
    this.inflight = null;
    this.opener = null;
    this.element = (id) => byId(`viewer-${id}`);
    this.image = this.element("image");
    this.frame = this.element("frame");
    this.canvas = this.element("canvas");
    this.wire();
  }

  wire() {
    const on = (id, handler) => this.element(id).addEventListener("click", handler);
    on("close", () => this.dialog.close());
    on("prev", () => this.turnTo(this.page - 1));
    on("next", () => this.turnTo(this.page + 1));
    on("zoom-out", () => this.zoom(-1));
    on("zoom-in", () => this.zoom(1));
    on("fit", () => this.zoom(0));
    on("rotate-left", () => this.rotate(-90));
    on("rotate-right", () => this.rotate(90));
    on("original", () => this.openOriginal());
    on("accept", () => this.review("accepted"));
    this.element("review-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.review("rejected");
    });
    this.element("reason-text").addEventListener("input", () => this.showReviewError(""));
    for (const radio of this.dialog.querySelectorAll("input[name=reject-reason]")) {
      radio.addEventListener("change", () => this.showReviewError(""));
    }
    this.canvas.addEventListener("keydown", (event) => this.key(event));
    this.image.addEventListener("load", () => this.layout());
    this.dialog.addEventListener("close", () => this.closed());
    this.resizeObserver = new ResizeObserver(() => {
      if (this.dialog.open) this.layout();
    });
    this.resizeObserver.observe(this.canvas);
  }

  get isOpen() {
    return this.dialog.open;
  }

  open(document, opener = null) {
    this.forget();
    this.document = document;
    this.opener = opener;
    this.page = 1;
    this.zoomIndex = FIT_ZOOM_INDEX;
    this.rotation = 0;
    this.resetReview();
    if (!this.dialog.open) this.dialog.showModal();
    this.draw();
    this.canvas.focus();
    this.load();
  }

  // A `case.document` about the shown document: its state, its pages.
  update(document) {
    if (!this.document || document.id !== this.document.id) return;
    const wasReviewable = reviewable(this.document);
    this.document = document;
    if (document.state === "purged") {
      this.dialog.close();
      return;
    }
    this.page = Math.min(this.page, this.pages());
    this.draw();
    if (wasReviewable && !reviewable(document)) this.element("state").focus();
  }

  redraw() {
    if (this.document) this.draw();
  }

  pages() {
    return Math.max(1, this.document.pages || 1);
  }

  // ------------------------------------------------------------------ drawing

  draw() {
    const document = this.document;
    const tr = this.tr;
    this.element("title").textContent = document.title || tr.t("documents.untitled");
    const state = this.element("state");
    state.textContent = this.describe(document);
    state.dataset.state = document.state;
    this.element("page").textContent = tr.t("viewer.page", { page: this.page, pages: this.pages() });
    this.element("prev").disabled = this.page <= 1;
    this.element("next").disabled = this.page >= this.pages();
    this.element("zoom").textContent = tr.t("viewer.zoom", { percent: Math.round(ZOOMS[this.zoomIndex] * 100) });
    this.element("zoom-out").disabled = this.zoomIndex <= 0;
    this.element("zoom-in").disabled = this.zoomIndex >= ZOOMS.length - 1;
    this.image.alt = tr.t("viewer.image_alt", { title: this.element("title").textContent, page: this.page, pages: this.pages() });
    this.element("review").hidden = !reviewable(document);
    this.dialog.dataset.document = document.id;
    this.dialog.dataset.page = String(this.page);
  }

  // Sizes the page to the canvas (rule 2): at the "fit" zoom the whole page shows.
  layout() {
    const natural = { width: this.image.naturalWidth, height: this.image.naturalHeight };
    if (!natural.width || !natural.height) return;
    const quarter = this.rotation % 180 !== 0;
    const aspect = natural.height / natural.width;
    const style = getComputedStyle(this.canvas);
    const room = {
      width: this.canvas.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
      height: this.canvas.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom),
    };
    // The page's drawn width and height before turning it, so that turned it fits.
    const boxAspect = quarter ? 1 / aspect : aspect;
    const fitBoxWidth = Math.max(50, Math.min(room.width, room.height / boxAspect));
    const boxWidth = fitBoxWidth * ZOOMS[this.zoomIndex];
    const width = quarter ? boxWidth / aspect : boxWidth;
    const height = width * aspect;
    this.frame.style.width = `${quarter ? height : width}px`;
    this.frame.style.height = `${quarter ? width : height}px`;
    this.image.style.width = `${width}px`;
    this.image.style.height = `${height}px`;
    this.image.style.transform = `translate(-50%, -50%) rotate(${this.rotation}deg)`;
    this.drawnWidth = width;
    if (this.neededWidth() > (this.images.get(this.page)?.width || 0)) this.load();
  }

  neededWidth() {
    const drawn = this.drawnWidth || this.canvas.clientWidth;
    const pixels = drawn * (window.devicePixelRatio || 1);
    return Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, Math.ceil(pixels / WIDTH_STEP) * WIDTH_STEP));
  }

  // ------------------------------------------------------------------ pages

  async load() {
    const document = this.document;
    const page = this.page;
    const width = this.neededWidth();
    const known = this.images.get(page);
    if (known) this.show(known.url);
    if (known && known.width >= width) return;
    const wanted = this.inflight;
    if (wanted && wanted.document.id === document.id && wanted.page === page && wanted.width >= width) return;
    const ticket = ++this.loading;
    this.inflight = { document, page, width };
    this.setStatus(known ? "" : this.tr.t("viewer.loading"));
    let blob;
    try {
      blob = await pageImage({ document: document.id, page, width, token: this.getToken() });
    } catch (error) {
      if (ticket === this.loading) this.inflight = null;
      if (ticket !== this.loading || !this.shows(document)) return;
      this.setStatus(this.tr.t(error.code === "purged" ? "viewer.purged" : "viewer.load_failed", { why: error.message }));
      return;
    }
    if (ticket === this.loading) this.inflight = null;
    // Rule 3: a later request, another page or another document won. The same
    // document told again (its state moved: seeing a page marks it viewed) is no other.
    if (!this.shows(document)) return;
    const url = URL.createObjectURL(blob);
    const replaced = this.images.get(page);
    this.images.set(page, { width, url });
    if (replaced) URL.revokeObjectURL(replaced.url);
    if (ticket === this.loading && this.page === page) {
      this.setStatus("");
      this.show(url);
    }
  }

  shows(document) {
    return Boolean(this.document) && this.document.id === document.id;
  }

  // The image's load event sizes it (layout).
  show(url) {
    if (this.image.getAttribute("src") !== url) this.image.src = url;
    this.image.hidden = false;
  }

  setStatus(text) {
    const status = this.element("status");
    status.textContent = text;
    status.hidden = !text;
  }

  turnTo(page) {
    if (!this.document || page < 1 || page > this.pages() || page === this.page) return;
    this.page = page;
    this.image.hidden = true;
    this.draw();
    this.load();
  }

  // -1 / +1 a step; 0 back to the whole page.
  zoom(step) {
    const index = step === 0 ? FIT_ZOOM_INDEX : this.zoomIndex + step;
    this.zoomIndex = Math.min(ZOOMS.length - 1, Math.max(0, index));
    this.draw();
    this.layout();
  }

  rotate(degrees) {
    this.rotation = (this.rotation + degrees + 360) % 360;
    this.dialog.dataset.rotation = String(this.rotation);
    this.layout();
  }

  key(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const actions = {
      ArrowLeft: () => this.turnTo(this.page - 1),
      PageUp: () => this.turnTo(this.page - 1),
      ArrowRight: () => this.turnTo(this.page + 1),
      PageDown: () => this.turnTo(this.page + 1),
      "+": () => this.zoom(1),
      "=": () => this.zoom(1),
      "-": () => this.zoom(-1),
      "0": () => this.zoom(0),
      r: () => this.rotate(90),
      R: () => this.rotate(-90),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }

  async openOriginal() {
    const document = this.document;
    try {
      const blob = await documentContent({ document: document.id, token: this.getToken() });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: document.title || document.id, hidden: true });
      this.dialog.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      this.setStatus(this.tr.t("viewer.load_failed", { why: error.message }));
    }
  }

  // ------------------------------------------------------------------ verdict

  resetReview() {
    for (const radio of this.dialog.querySelectorAll("input[name=reject-reason]")) radio.checked = false;
    this.element("reason-text").value = "";
    this.showReviewError("");
  }

  // The reason sent with a rejection (rule 4): the preset's words in the expert's
  // language, then what the expert wrote.
  rejectReason() {
    const chosen = this.dialog.querySelector("input[name=reject-reason]:checked");
    const preset = chosen ? this.tr.t(`documents.reason.${chosen.value}`) : "";
    const written = this.element("reason-text").value.trim();
    return [preset, written].filter(Boolean).join(" — ");
  }

  async review(verdict) {
    const document = this.document;
    if (!document || !reviewable(document)) return;
    const reason = verdict === "rejected" ? this.rejectReason() : "";
    if (verdict === "rejected" && !reason) {
      this.showReviewError(this.tr.t("viewer.reason_needed"));
      const first = this.dialog.querySelector("input[name=reject-reason]");
      if (first) first.focus();
      return;
    }
    const buttons = [this.element("accept"), this.element("reject")];
    buttons.forEach((button) => button.setAttribute("aria-disabled", "true"));
    try {
      await this.onReview(document, verdict, reason);
      this.showReviewError("");
    } catch (error) {
      this.showReviewError(this.tr.t("viewer.review_failed", { why: error.message }));
    } finally {
      buttons.forEach((button) => button.removeAttribute("aria-disabled"));
    }
  }

  showReviewError(text) {
    this.element("review-error").textContent = text;
  }

  // ------------------------------------------------------------------ closing

  // Rule 1: nothing of the document stays once the viewer is closed.
  forget() {
    this.loading += 1;
    this.inflight = null;
    for (const { url } of this.images.values()) URL.revokeObjectURL(url);
    this.images.clear();
    this.image.removeAttribute("src");
    this.image.hidden = true;
    this.drawnWidth = 0;
    this.setStatus("");
  }

  closed() {
    this.forget();
    this.document = null;
    delete this.dialog.dataset.document;
    const opener = this.opener;
    this.opener = null;
    if (opener && opener.isConnected) opener.focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
    else this.closed();
  }
}
