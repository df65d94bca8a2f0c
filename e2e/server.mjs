// Start the real server binary on 127.0.0.1:0 with a fresh data directory and stop it after.
// `ONCOLIVE_BIN` picks the binary; `TEST_LOG=1` prints its log.
import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { test as base, expect } from '@playwright/test';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', 'web');

const BIN = process.env.ONCOLIVE_BIN || '/root/.cache/oncolive-target/debug/oncolive';
const READY_TIMEOUT_MS = 30_000;

/** Cargo replaces the binary while it links; a test started then waits instead of failing. */
async function waitForBinary(limitMs = 300_000) {
  const started = Date.now();
  for (;;) {
    try {
      await access(BIN, constants.X_OK);
      return;
    } catch {
      if (Date.now() - started > limitMs) throw new Error(`no server binary at ${BIN} (set ONCOLIVE_BIN)`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/**
 * Returns { url, admin_token, session_id, expert_token, moderator_token, links, logs, stop() }.
 * Extra `args` go to `oncolive serve`; `listen` replaces `127.0.0.1:0`.
 */
export async function startServer({ args = [], env = {}, listen = '127.0.0.1:0' } = {}) {
  await waitForBinary();
  const dir = await mkdtemp(join(tmpdir(), 'oncolive-e2e-'));
  const readyFile = join(dir, 'ready.json');
  const child = spawn(BIN, [
    'serve', '--listen', listen, '--data-dir', dir, '--demo', '--ready-file', readyFile, ...args,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { RUST_LOG: 'warn', ...process.env, ...env } });
  const logs = [];
  const keep = (chunk) => {
    const text = chunk.toString();
    logs.push(text);
    if (process.env.TEST_LOG) process.stderr.write(text);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));

  const started = Date.now();
  let info = null;
  while (!info) {
    if (exited) throw new Error(`oncolive exited (${JSON.stringify(exited)}) before it was ready:\n${logs.join('')}`);
    if (Date.now() - started > READY_TIMEOUT_MS) {
      child.kill('SIGKILL');
      throw new Error(`oncolive was not ready after ${READY_TIMEOUT_MS} ms:\n${logs.join('')}`);
    }
    try {
      info = JSON.parse(await readFile(readyFile, 'utf8'));
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stop() {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
    if (!process.env.KEEP_DATA) await rm(dir, { recursive: true, force: true });
  }

  return { ...normalize(info), logs, stop };
}

/** The ready file nests the demo session under `demo`; give tests one flat shape either way. */
function normalize(info) {
  const demo = info.demo || {};
  return {
    url: info.url,
    admin_token: info.admin_token,
    session_id: info.session_id || (demo.session && demo.session.id),
    expert_token: info.expert_token || (demo.tokens && demo.tokens.expert),
    moderator_token: info.moderator_token || (demo.tokens && demo.tokens.moderator),
    links: { host: info.host_link, ...(demo.links || {}), ...(info.links || {}) },
    raw: info,
  };
}

/** Create a fresh session through the API (as the host page does); returns { session, links, tokens }. */
export async function createSession(server, fields = {}) {
  const res = await fetch(`${server.url}/api/sessions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` },
    body: JSON.stringify({
      title: 'Test session', topic: '', expert_name: 'Dr. Test',
      scheduled_start: new Date(Date.now() + 3600_000).toISOString(), moderation: 'pre', ...fields,
    }),
  });
  if (res.status !== 201) throw new Error(`create session: ${res.status} ${await res.text()}`);
  return res.json();
}

// ---- the web files of this checkout ----
//
// A debug build serves web/ from the directory it was compiled in. On a machine where several
// checkouts share one target directory that may be another checkout's web/, so the fixture
// compares what the server serves with this checkout and, when they differ, has the browser
// take the files from here (keeping the server's headers, CSP included, and gzip).

/** The web/ file a URL path maps to (the same table as server/src/web.rs), or null. */
export function webFileFor(pathname) {
  if (pathname === '/') return 'index.html';
  if (pathname === '/host') return 'host.html';
  if (pathname === '/privacy.html') return 'privacy.html';
  if (/^\/s\/[^/]+$/.test(pathname)) return 'patient.html';
  if (/^\/s\/[^/]+\/expert$/.test(pathname)) return 'expert.html';
  if (/^\/s\/[^/]+\/moderate$/.test(pathname)) return 'moderate.html';
  if (/^\/s\/[^/]+\/venue$/.test(pathname)) return 'venue.html';
  if (/^\/assets\/[\w./-]+$/.test(pathname) && !pathname.includes('..')) return pathname.slice(1);
  return null;
}

async function listWeb(dir = WEB, prefix = '') {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) out.push(...await listWeb(join(dir, entry.name), `${rel}/`));
    else out.push(rel);
  }
  return out;
}

const TYPES = {
  html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml', png: 'image/png', json: 'application/json',
};
const URL_OF = { 'index.html': '/', 'host.html': '/host', 'privacy.html': '/privacy.html', 'patient.html': '/s/x', 'expert.html': '/s/x/expert', 'moderate.html': '/s/x/moderate', 'venue.html': '/s/x/venue' };

/** Does the server serve exactly this checkout's web/? */
async function servesThisCheckout(url) {
  for (const rel of await listWeb()) {
    const path = URL_OF[rel] || `/${rel}`;
    if (!webFileFor(path)) continue;
    const [served, local] = await Promise.all([
      fetch(url + path).then((r) => r.arrayBuffer()).then((b) => Buffer.from(b)).catch(() => null),
      readFile(join(WEB, rel)),
    ]);
    if (!served || !served.equals(local)) return false;
  }
  return true;
}

/** Make a browser context load web/ from this checkout, with the server's own headers. */
export async function routeWebFromCheckout(context, origin) {
  await context.route((u) => u.origin === origin && webFileFor(u.pathname) !== null, async (route) => {
    const file = webFileFor(new URL(route.request().url()).pathname);
    let body;
    try { body = await readFile(join(WEB, file)); } catch { return route.continue(); }
    const response = await route.fetch({ headers: { ...route.request().headers(), 'if-none-match': '' } });
    // an asset this checkout adds is unknown to the other checkout's server: serve it plainly
    // (a script's or a stylesheet's own headers carry no CSP; the page's do)
    const added = response.status() === 404 && file.startsWith('assets/');
    if (response.status() !== 200 && !added) return route.fulfill({ response }); // an error is the server's to give
    const headers = added ? { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' } : { ...response.headers() };
    for (const h of ['content-encoding', 'content-length', 'etag', 'transfer-encoding']) delete headers[h];
    headers['content-type'] = TYPES[file.split('.').pop()] || headers['content-type'];
    if (/gzip/.test(route.request().headers()['accept-encoding'] || '')) {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
    await route.fulfill({ status: 200, headers, body });
  });
}

/** `test` with a `server` fixture: one server per worker (workers: 1, so one per run). */
export const test = base.extend({
  server: [async ({}, use) => {
    const server = await startServer();
    server.webFromCheckout = !(await servesThisCheckout(server.url));
    if (server.webFromCheckout) {
      console.warn(`note: ${BIN} serves another checkout's web/; pages are loaded from ${WEB} instead`);
    }
    await use(server);
    await server.stop();
  }, { scope: 'worker' }],
  // every context a test opens gets the checkout's web/ when the server's differs
  browser: [async ({ browser, server }, use) => {
    if (server.webFromCheckout) {
      const open = browser.newContext.bind(browser);
      browser.newContext = async (options) => {
        const context = await open(options);
        await routeWebFromCheckout(context, server.url);
        return context;
      };
    }
    await use(browser);
  }, { scope: 'worker' }],
});

export { expect };

// ---- screenshots and what a 60-year-old can read ----

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');

/** A screenshot of what is on screen now (the viewport, as the phone shows it) in e2e/screenshots/. */
export async function shot(page, name, { fullPage = false } = {}) {
  await mkdir(SHOTS, { recursive: true });
  await page.evaluate(() => { for (const el of document.querySelectorAll('.toast')) el.remove(); });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/**
 * Visible text set smaller than `min` px, or pushed past the right edge of the screen: what an
 * older patient cannot read. Returns readable descriptions ([] when all is well).
 */
export async function unreadable(page, min = 16) {
  return page.evaluate((minPx) => {
    const out = [];
    const width = document.documentElement.clientWidth;
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent.trim();
      const el = n.parentElement;
      if (!text || !el || el.closest('.print-root, [hidden], script, style')) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0 && r.height > 0);
      if (!rects.length) continue;
      const size = parseFloat(getComputedStyle(el).fontSize);
      if (size < minPx - 0.01) out.push(`${size}px: "${text.slice(0, 40)}" (${el.tagName.toLowerCase()}.${el.className})`);
      if (rects.some((r) => r.right > width + 0.5)) out.push(`cut off at ${width}px: "${text.slice(0, 40)}"`);
    }
    return out;
  }, min);
}
