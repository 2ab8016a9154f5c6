// The page's JWT lives in localStorage under one key shared by the three pages:
// a kiosk or a workstation is provisioned once, and the token never enters a URL.

const TOKEN_KEY = "visio.token";

export function storedToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// Wire the provisioning form: a textarea and a Save button. `onSaved` runs once
// a non-empty token is stored, to connect with it; `emptyMessage` gives the
// words for an empty form, in the page's current language.
export function bindTokenForm(form, { onSaved, emptyMessage }) {
  const input = form.querySelector("textarea");
  const error = form.querySelector("[data-role=token-error]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = emptyMessage();
      input.focus();
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    input.value = "";
    error.textContent = "";
    onSaved();
  });
}

export function showTokenError(form, message) {
  form.querySelector("[data-role=token-error]").textContent = message;
}
