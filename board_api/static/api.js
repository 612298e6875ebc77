// The control plane's REST API, with the session's API key (if any) attached.
// The key lives in sessionStorage: it survives reloads of this tab, not the browser.

const KEY = "meta-agent.api-key";
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
  }
}

export const auth = {
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
};

function headers(extra) {
  // The audit log names the surface an action came through.
  const h = { Accept: "application/json", "X-Meta-Agent-Source": "board", ...extra };
  if (auth.key) h.Authorization = `Bearer ${auth.key}`;
  return h;
}

/** JSON request; throws ApiError carrying the problem+json `code`. */
export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") url.searchParams.set(k, v);
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(url, init);
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** An EventSource URL. EventSource cannot send headers, and a key must not sit in a URL
 *  (proxies and histories keep URLs), so a signed-in board puts a stream token there:
 *  good for stream GETs only, for ten minutes. One is reused until shortly before expiry. */
let streamToken = { key: "", token: "", until: 0 };

export async function streamUrl(path, params = {}) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v != null) url.searchParams.set(k, v);
  if (auth.key) {
    if (streamToken.key !== auth.key || streamToken.until < Date.now() + 60_000) {
      const t = await api("/stream-tokens", { method: "POST" });
      streamToken = { key: auth.key, token: t.token || "", until: Date.now() + (t.expires_in || 0) * 1000 };
    }
    if (streamToken.token) url.searchParams.set("access_token", streamToken.token);
  }
  return url.toString();
}

/** A download link for an artifact; a plain link cannot carry the key either, so
 *  downloads with a key go through fetch and a blob URL (see detail.js). */
export function artifactPath(taskId, name) {
  return `${API}/tasks/${encodeURIComponent(taskId)}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`;
}

export async function download(taskId, name) {
  const resp = await fetch(artifactPath(taskId, name), { headers: headers() });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
  const url = URL.createObjectURL(await resp.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
