// The document routes of the HTTP API, called with the page's own token in an
// `Authorization: Bearer` header (never in a URL: a URL ends up in logs and in the
// browser's history). Images fetched this way are shown through object URLs, which
// the caller revokes when it no longer shows them.
//
// Errors come back as `HttpError` with the server's wire code (`too_large`,
// `unsupported_type`, `purged`...), or `network` when nothing answered.

export class HttpError extends Error {
  constructor(code, reason, status = 0) {
    super(reason || code);
    this.name = "HttpError";
    this.code = code;
    this.status = status;
  }
}

async function authorized(path, token, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch (error) {
    throw new HttpError("network", error.message);
  }
  if (response.ok) return response;
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not every refusal (a proxy's, for one) is the server's JSON.
  }
  throw new HttpError(body.code || `http_${response.status}`, body.reason || response.statusText, response.status);
}

// The server refuses titles with path separators, `..` or control characters:
// a file's own name is made to fit rather than refused.
export function documentTitle(name) {
  const cleaned = String(name || "")
    .replace(/[\u0000-\u001f\u007f/\\]/g, " ")
    .replace(/\.{2,}/g, ".")
    .replace(/\s+/g, " ")
    .trim();
  return cleaned.slice(0, 120);
}

// POST the file's raw bytes to the call's case file; the DocumentInfo comes back.
// The same `key` on a retry gives the same document, not a second copy.
export async function uploadDocument({ call, file, key, token }) {
  const headers = {
    "Content-Type": file.type || "application/octet-stream",
    "Idempotency-Key": key,
  };
  const title = documentTitle(file.name);
  if (title) headers["X-Document-Title"] = encodeURIComponent(title);
  const response = await authorized(`/api/calls/${encodeURIComponent(call)}/documents`, token, {
    method: "POST",
    headers,
    body: file,
  });
  return response.json();
}

// A page (from 1) of a document as a PNG of about `width` pixels.
export async function pageImage({ document, page, width, token }) {
  const path = `/api/documents/${encodeURIComponent(document)}/pages/${page}.png?width=${width}`;
  const response = await authorized(path, token);
  return response.blob();
}

// The document itself, as the server checked it (for opening the original).
export async function documentContent({ document, token }) {
  const response = await authorized(`/api/documents/${encodeURIComponent(document)}/content`, token);
  return response.blob();
}
