// A small tus 1.0.0 client (core + creation; https://tus.io/protocols/resumable-upload) for the
// library uploads: `POST` creates the upload, `PATCH`es send it chunk by chunk, and after a
// failure `HEAD` tells where the server is, so only the rest is sent. The server checks the
// file when the last byte arrives: `204` with `Oncolive-Video: {id}`, or `422` with the reason.
// `fetch` is passed in, so the tests run it against a fake server.

export const TUS_VERSION = '1.0.0';
export const DEFAULT_CHUNK = 2 * 1024 * 1024;

/** An upload that cannot go on: `code` is the server's reason (not_mp4, too_long, …) or ours. */
export class UploadError extends Error {
  constructor(code, message, status = 0) {
    super(message || code);
    this.name = 'UploadError';
    this.code = code;
    this.status = status;
  }
}

function base64(text) {
  const bytes = new TextEncoder().encode(String(text));
  let bin = '';
  for (let i = 0; i < bytes.length; i += 1) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

/** `Upload-Metadata`: `key base64(value)` pairs, comma-separated, values as UTF-8. */
export function encodeMetadata(meta) {
  return Object.entries(meta)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k} ${base64(v)}`)
    .join(',');
}

const abortError = () => Object.assign(new Error('paused'), { name: 'AbortError' });

export class TusUpload {
  /**
   * `file`: a Blob/File. Options: `endpoint` ('/api/uploads'), `token` (admin bearer),
   * `metadata` (object), `chunkSize`, `url` (an upload made earlier, to resume), `fetch`,
   * `onProgress(sent, total)`, `onUrl(url)` (keep it to resume after a reload),
   * `retryDelays` (ms between attempts after a network failure), `sleep(ms)`.
   */
  constructor(file, opts = {}) {
    this.file = file;
    this.endpoint = opts.endpoint || '/api/uploads';
    this.token = opts.token || null;
    this.metadata = opts.metadata || {};
    this.chunkSize = Math.max(1, opts.chunkSize || DEFAULT_CHUNK);
    this.url = opts.url || null;
    this.fetch = opts.fetch || ((...a) => fetch(...a));
    this.onProgress = opts.onProgress || (() => {});
    this.onUrl = opts.onUrl || (() => {});
    this.retryDelays = opts.retryDelays || [1000, 3000, 5000, 10000];
    this.sleep = opts.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.offset = 0;
    this.controller = null;
    this.paused = false;
  }

  headers(extra) {
    const h = { 'Tus-Resumable': TUS_VERSION, ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  async request(url, init) {
    if (this.paused) throw abortError();
    this.controller = new AbortController();
    try {
      return await this.fetch(url, { ...init, headers: this.headers(init.headers), signal: this.controller.signal, cache: 'no-store' });
    } catch (err) {
      if (this.paused || (err && err.name === 'AbortError')) throw abortError();
      throw new UploadError('network', String(err && err.message));
    } finally {
      this.controller = null;
    }
  }

  /** Stop sending (the current chunk is dropped); `start()` goes on from the server's offset. */
  pause() {
    this.paused = true;
    if (this.controller) this.controller.abort();
  }

  /**
   * Send the file (or what is left of it). Resolves `{ video }` (the new video's id, or null if
   * the server did not say), rejects with an UploadError, or an AbortError after `pause()`.
   */
  async start() {
    this.paused = false;
    const size = this.file.size;
    let failures = 0;
    let needHead = !!this.url;
    for (;;) {
      try {
        if (!this.url) {
          await this.create();
          needHead = false;
        } else if (needHead) {
          const done = await this.head();
          needHead = false;
          if (done) return done;
        }
        if (this.offset >= size && size > 0) {
          // everything is there but the answer was lost: ask once more
          const done = await this.head();
          if (done) return done;
        }
        const done = await this.patch();
        failures = 0;
        if (done) return done;
      } catch (err) {
        if (err && err.name === 'AbortError') throw err;
        if (!(err instanceof UploadError)) throw err;
        if (err.code === 'conflict') { needHead = true; continue; }
        if (err.code === 'gone') {
          // the server no longer has it (expired, or removed): start again from nothing
          this.url = null;
          this.offset = 0;
          this.onUrl(null);
          continue;
        }
        if (err.code !== 'network' && err.code !== 'server') throw err;
        if (failures >= this.retryDelays.length) throw err;
        await this.sleep(this.retryDelays[failures]);
        failures += 1;
        needHead = !!this.url;
        if (this.paused) throw abortError();
      }
    }
  }

  async create() {
    const res = await this.request(this.endpoint, {
      method: 'POST',
      headers: { 'Upload-Length': String(this.file.size), 'Upload-Metadata': encodeMetadata(this.metadata) },
    });
    if (res.status !== 201) throw await failure(res);
    const loc = res.headers.get('Location');
    if (!loc) throw new UploadError('server', 'no Location', res.status);
    this.url = new URL(loc, new URL(this.endpoint, globalThis.location ? globalThis.location.href : 'http://localhost/')).href;
    this.offset = 0;
    this.onUrl(this.url);
  }

  /** Learn the server's offset; returns the result when the upload turns out to be complete. */
  async head() {
    const res = await this.request(this.url, { method: 'HEAD', headers: {} });
    if (res.status === 404 || res.status === 410) throw new UploadError('gone', 'upload not found', res.status);
    if (res.status === 422) throw await failure(res);
    if (!res.ok) throw await failure(res);
    const offset = Number(res.headers.get('Upload-Offset'));
    if (!Number.isFinite(offset)) throw new UploadError('server', 'no Upload-Offset', res.status);
    this.offset = offset;
    this.onProgress(offset, this.file.size);
    if (offset >= this.file.size && this.file.size > 0) {
      const video = res.headers.get('Oncolive-Video');
      return { video: video || null };
    }
    return null;
  }

  /** Send the next chunk; returns the result after the last one. */
  async patch() {
    const end = Math.min(this.offset + this.chunkSize, this.file.size);
    const chunk = this.file.slice(this.offset, end);
    const res = await this.request(this.url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(this.offset) },
      body: chunk,
    });
    if (res.status === 409) throw new UploadError('conflict', 'offset mismatch', 409);
    if (res.status === 404 || res.status === 410) throw new UploadError('gone', 'upload not found', res.status);
    if (res.status !== 204 && res.status !== 200) throw await failure(res);
    const offset = Number(res.headers.get('Upload-Offset'));
    this.offset = Number.isFinite(offset) ? offset : end;
    this.onProgress(this.offset, this.file.size);
    if (this.offset >= this.file.size) return { video: res.headers.get('Oncolive-Video') || null };
    return null;
  }
}

/**
 * The UploadError for a refused request: the server's `{error: {code, message}}` when it sent
 * one; for `video_refused` the code is its `error.reason` (not_mp4, too_long, …).
 */
async function failure(res) {
  let code = res.status >= 500 ? 'server' : res.status === 401 || res.status === 403 ? 'unauthorized'
    : res.status === 413 ? 'too_large' : `http_${res.status}`;
  let message = res.statusText || '';
  try {
    const data = await res.json();
    if (data && data.error && data.error.code) {
      // a 5xx stays retryable whatever it is called
      if (res.status < 500) code = data.error.code === 'video_refused' && data.error.reason ? data.error.reason : data.error.code;
      message = data.error.message || message;
    }
  } catch { /* no JSON body */ }
  return new UploadError(code, message, res.status);
}
