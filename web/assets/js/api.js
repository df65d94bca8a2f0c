// HTTP API client, tokens and the session id of the current page.

export class ApiError extends Error {
  /** status 0 means the request never got an answer (offline, DNS, reset). */
  constructor(status, code, message, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Call the JSON API. Errors come back as ApiError with the server's `error.code`. */
export async function api(path, { method = 'GET', token, body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', String(err && err.message));
  }
  if (!res.ok) {
    let code = 'http_' + res.status;
    let message = res.statusText;
    try {
      const data = await res.json();
      if (data && data.error) ({ code, message } = data.error);
    } catch { /* not JSON */ }
    const retry = Number(res.headers.get('Retry-After'));
    throw new ApiError(res.status, code, message, Number.isFinite(retry) ? retry : undefined);
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res.text();
}

/** The `{id}` of `/s/{id}`, `/s/{id}/expert`, `/s/{id}/moderate`. */
export function sessionIdFromPath(pathname = location.pathname) {
  const m = /^\/s\/([^/]+)/.exec(pathname);
  return m ? decodeURIComponent(m[1]) : null;
}

function storage(kind) {
  try { return kind === 'session' ? sessionStorage : localStorage; } catch { return null; }
}

export function loadJSON(key, kind = 'local') {
  const s = storage(kind);
  if (!s) return null;
  try { return JSON.parse(s.getItem(key) || 'null'); } catch { return null; }
}

export function saveJSON(key, value, kind = 'local') {
  const s = storage(kind);
  if (!s) return;
  try {
    if (value === null) s.removeItem(key);
    else s.setItem(key, JSON.stringify(value));
  } catch { /* full or blocked: the page still works for this visit */ }
}

/**
 * A staff token arrives in the URL fragment (`#token=…`). Keep it in storage under `key` and take
 * it out of the address bar so it is not shared by copying the URL or shown on a projector.
 */
export function takeFragmentToken(key, kind = 'local') {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const fromHash = params.get('token');
  if (fromHash) {
    saveJSON(key, fromHash, kind);
    history.replaceState(null, '', location.pathname + location.search);
    return fromHash;
  }
  return loadJSON(key, kind);
}
