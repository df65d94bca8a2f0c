// tus.js against a fake tus server: creation, chunked PATCH, resume after a failed PATCH via
// HEAD, 409 handling, pause and resume, an upload the server lost, and the 422 reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TusUpload, UploadError, encodeMetadata, TUS_VERSION } from '../assets/js/tus.js';

const ENDPOINT = 'http://oncolive.test/api/uploads';

function fileOf(size) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 7 + 3) % 251;
  return { blob: new Blob([bytes]), bytes };
}

const decode = (b64) => new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));

/**
 * A tus server in memory. `plan` hooks let a test break things: `beforePatch(n, req)` may return
 * 'drop' (the connection dies after `partial` bytes arrived), 'conflict', or a Response.
 * `complete(bytes)` decides the last PATCH's answer (default: 204 with a video id).
 */
function fakeServer({ beforePatch, complete, partial = 0 } = {}) {
  const uploads = new Map();
  const log = [];
  let patches = 0;
  let n = 0;
  const fetch = async (url, init = {}) => {
    const method = init.method || 'GET';
    const headers = new Headers(init.headers);
    log.push({ method, url, headers });
    if (init.signal && init.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    assert.equal(headers.get('Tus-Resumable'), TUS_VERSION);
    if (method === 'POST') {
      n += 1;
      const id = `u${n}`;
      uploads.set(id, { length: Number(headers.get('Upload-Length')), data: new Uint8Array(0), meta: headers.get('Upload-Metadata'), auth: headers.get('Authorization') });
      return new Response(null, { status: 201, headers: { Location: `/api/uploads/${id}`, 'Tus-Resumable': TUS_VERSION } });
    }
    const id = new URL(url).pathname.split('/').pop();
    const up = uploads.get(id);
    if (!up) return new Response(null, { status: 404 });
    if (method === 'HEAD') {
      return new Response(null, { status: 200, headers: { 'Upload-Offset': String(up.data.length), 'Upload-Length': String(up.length), 'Cache-Control': 'no-store' } });
    }
    if (method === 'PATCH') {
      patches += 1;
      assert.equal(headers.get('Content-Type'), 'application/offset+octet-stream');
      const offset = Number(headers.get('Upload-Offset'));
      const body = new Uint8Array(await init.body.arrayBuffer());
      const hook = beforePatch ? await beforePatch(patches, { offset, body, up, signal: init.signal }) : null;
      if (hook instanceof Response) return hook;
      if (hook === 'conflict' || offset !== up.data.length) return new Response(null, { status: 409 });
      const took = hook === 'drop' ? body.subarray(0, partial) : body;
      const next = new Uint8Array(up.data.length + took.length);
      next.set(up.data);
      next.set(took, up.data.length);
      up.data = next;
      if (hook === 'drop') throw new TypeError('network connection was lost');
      if (up.data.length === up.length) {
        if (complete) return complete(up);
        return new Response(null, { status: 204, headers: { 'Upload-Offset': String(up.data.length), 'Oncolive-Video': 'vid-1' } });
      }
      return new Response(null, { status: 204, headers: { 'Upload-Offset': String(up.data.length) } });
    }
    return new Response(null, { status: 405 });
  };
  return { fetch, uploads, log, get patches() { return patches; } };
}

const noSleep = async () => {};

test('metadata is base64 of UTF-8, comma-separated', () => {
  const m = encodeMetadata({ title: '肺结节', language: 'zh', topic: '' });
  const pairs = m.split(',').map((p) => p.split(' '));
  assert.deepEqual(pairs.map((p) => p[0]), ['title', 'language', 'topic']);
  assert.equal(decode(pairs[0][1]), '肺结节');
  assert.equal(decode(pairs[1][1]), 'zh');
});

test('creation, then the file in chunks; the last answer names the video', async () => {
  const server = fakeServer();
  const { blob, bytes } = fileOf(10_000);
  const progress = [];
  let kept = null;
  const up = new TusUpload(blob, {
    endpoint: ENDPOINT, token: 'admin-token', chunkSize: 4096, fetch: server.fetch,
    metadata: { title: 'Lung nodules', topic: 'CT', expert: 'Dr. Wang', language: 'en', filename: 'a.mp4' },
    onProgress: (sent, total) => progress.push([sent, total]), onUrl: (u) => { kept = u; }, sleep: noSleep,
  });
  const result = await up.start();
  assert.deepEqual(result, { video: 'vid-1' });
  assert.equal(kept, 'http://oncolive.test/api/uploads/u1');
  const post = server.log[0];
  assert.equal(post.method, 'POST');
  assert.equal(post.headers.get('Upload-Length'), '10000');
  assert.equal(post.headers.get('Authorization'), 'Bearer admin-token');
  const meta = Object.fromEntries(post.headers.get('Upload-Metadata').split(',').map((p) => p.split(' ')).map(([k, v]) => [k, decode(v)]));
  assert.deepEqual(meta, { title: 'Lung nodules', topic: 'CT', expert: 'Dr. Wang', language: 'en', filename: 'a.mp4' });
  const patches = server.log.filter((r) => r.method === 'PATCH');
  assert.deepEqual(patches.map((r) => r.headers.get('Upload-Offset')), ['0', '4096', '8192']);
  assert.deepEqual(progress, [[4096, 10000], [8192, 10000], [10000, 10000]]);
  assert.deepEqual(server.uploads.get('u1').data, bytes);
});

test('a PATCH that fails half-way: HEAD says where the server is, and only the rest is sent', async () => {
  const server = fakeServer({ beforePatch: (n) => (n === 2 ? 'drop' : null), partial: 1000 });
  const { blob, bytes } = fileOf(10_000);
  const slept = [];
  const up = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, retryDelays: [5, 10], sleep: async (ms) => { slept.push(ms); } });
  const result = await up.start();
  assert.deepEqual(result, { video: 'vid-1' });
  assert.deepEqual(slept, [5]);
  const seq = server.log.map((r) => `${r.method}${r.method === 'PATCH' ? ` ${r.headers.get('Upload-Offset')}` : ''}`);
  assert.deepEqual(seq, ['POST', 'PATCH 0', 'PATCH 4096', 'HEAD', 'PATCH 5096', 'PATCH 9192']);
  assert.deepEqual(server.uploads.get('u1').data, bytes);
});

test('409 (offset mismatch): HEAD, then go on from the server’s offset', async () => {
  const server = fakeServer({ beforePatch: (n) => (n === 2 ? 'conflict' : null) });
  const { blob, bytes } = fileOf(9000);
  const up = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4000, fetch: server.fetch, sleep: noSleep });
  assert.deepEqual(await up.start(), { video: 'vid-1' });
  const seq = server.log.map((r) => r.method);
  assert.deepEqual(seq, ['POST', 'PATCH', 'PATCH', 'HEAD', 'PATCH', 'PATCH']);
  assert.deepEqual(server.uploads.get('u1').data, bytes);
});

test('pause drops the chunk in flight; start again resumes with HEAD, without a new upload', async () => {
  let release = null;
  const server = fakeServer({
    beforePatch: (n, { signal }) => (n === 2 ? new Promise((_, reject) => {
      release = reject;
      signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
    }) : null),
  });
  const { blob, bytes } = fileOf(10_000);
  const up = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, sleep: noSleep });
  const running = up.start();
  while (!release) await new Promise((r) => setImmediate(r));
  up.pause();
  await assert.rejects(running, (err) => err.name === 'AbortError');
  assert.equal(up.offset, 4096);
  assert.deepEqual(await up.start(), { video: 'vid-1' });
  assert.equal(server.log.filter((r) => r.method === 'POST').length, 1);
  assert.deepEqual(server.log.slice(-3).map((r) => r.method), ['HEAD', 'PATCH', 'PATCH']);
  assert.deepEqual(server.uploads.get('u1').data, bytes);
});

test('after a reload: a new client with the kept URL asks HEAD first and sends the rest', async () => {
  const server = fakeServer({ beforePatch: (n) => (n === 2 ? 'drop' : null) });
  const { blob, bytes } = fileOf(10_000);
  let kept = null;
  const first = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, retryDelays: [], onUrl: (u) => { kept = u; }, sleep: noSleep });
  await assert.rejects(first.start(), (err) => err instanceof UploadError && err.code === 'network');
  const again = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, url: kept, sleep: noSleep });
  const before = server.log.length;
  assert.deepEqual(await again.start(), { video: 'vid-1' });
  assert.deepEqual(server.log.slice(before).map((r) => r.method), ['HEAD', 'PATCH', 'PATCH']);
  assert.deepEqual(server.uploads.get('u1').data, bytes);
});

test('an upload the server no longer has is started again from nothing', async () => {
  const server = fakeServer();
  const { blob } = fileOf(5000);
  const urls = [];
  const up = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, url: 'http://oncolive.test/api/uploads/gone', onUrl: (u) => urls.push(u), sleep: noSleep });
  assert.deepEqual(await up.start(), { video: 'vid-1' });
  assert.deepEqual(server.log.map((r) => r.method), ['HEAD', 'POST', 'PATCH', 'PATCH']);
  assert.deepEqual(urls, [null, 'http://oncolive.test/api/uploads/u1']);
});

for (const code of ['not_mp4', 'no_video', 'unsupported_video_codec', 'unsupported_audio_codec', 'too_long', 'too_large', 'truncated']) {
  test(`the last PATCH refused with 422 ${code}: the reason reaches the page, nothing is retried`, async () => {
    const server = fakeServer({
      complete: () => new Response(JSON.stringify({ error: { code, message: `refused: ${code}` } }), { status: 422, headers: { 'Content-Type': 'application/json' } }),
    });
    const { blob } = fileOf(6000);
    const up = new TusUpload(blob, { endpoint: ENDPOINT, chunkSize: 4096, fetch: server.fetch, sleep: noSleep });
    await assert.rejects(up.start(), (err) => err instanceof UploadError && err.code === code && err.status === 422 && err.message === `refused: ${code}`);
    assert.equal(server.patches, 2);
  });
}

test('a refused creation (413, 401) is an error with its reason, not retried', async () => {
  for (const [status, code] of [[413, 'too_large'], [401, 'unauthorized']]) {
    let calls = 0;
    const fetch = async () => { calls += 1; return new Response(null, { status }); };
    const up = new TusUpload(fileOf(10).blob, { endpoint: ENDPOINT, fetch, sleep: noSleep });
    await assert.rejects(up.start(), (err) => err.code === code && err.status === status);
    assert.equal(calls, 1);
  }
});

test('a server error is retried a few times, then given up', async () => {
  let calls = 0;
  const fetch = async () => { calls += 1; return new Response(null, { status: 503 }); };
  const up = new TusUpload(fileOf(10).blob, { endpoint: ENDPOINT, fetch, retryDelays: [1, 1, 1], sleep: noSleep });
  await assert.rejects(up.start(), (err) => err.code === 'server');
  assert.equal(calls, 4);
});
