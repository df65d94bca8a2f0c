// Issue 13.9, measured reach: the patient page on an emulated weak link (Chromium's
// Network.emulateNetworkConditions: 400 kbit/s down, 150 kbit/s up, 300 ms latency). Printed and
// written to artifacts/reach.json, never asserted (timings on a shared machine are not pass/fail).
//
// The emulation slows HTTP, the WebSocket and the browser's WebRTC packets too (a packet capture
// shows each STUN answer and DTLS flight the browser sends ≈300–640 ms late; see
// docs/benchmarks.md), so "first frame" includes the slowed page, join, WHEP signalling, ICE and
// DTLS. The page's files come through e2e/wire.mjs (this checkout's web/,
// gzipped over a real socket), so the emulation applies to them and the bytes are wire bytes.
//
// REACH_RUNS (default 3) runs of each: video, then sound only.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { test, expect, createSession } from './server.mjs';
import { PHONE } from './media.mjs';
import { startWireProxy } from './wire.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WEB = join(ROOT, 'web');
const RUNS = Number(process.env.REACH_RUNS || 3);
// REACH_LINK=none: no emulation, a baseline that shows what the relay and browser take by themselves
const THROTTLE = process.env.REACH_LINK !== 'none';
const LINK = { latency: 300, down: 400_000, up: 150_000 }; // bit/s

async function relayMounted(url, sid) {
  const res = await fetch(`${url}/api/sessions/${sid}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  return res.status !== 404 && res.status !== 405;
}

/** In the page: when the join button is tapped, the first video frame, the first audio packet. */
function instrument(ctx, { audioOnly }) {
  return ctx.addInitScript((soundOnly) => {
    if (soundOnly) localStorage.setItem('oncolive.audioOnly', 'true');
    window.__reach = {};
    const Native = window.RTCPeerConnection;
    const pcs = [];
    if (Native) {
      window.RTCPeerConnection = class extends Native {
        constructor(...args) { super(...args); pcs.push(this); }
      };
    }
    document.addEventListener('click', (e) => {
      if (e.target.closest && e.target.closest('#join-btn') && !window.__reach.tap) window.__reach.tap = performance.now();
    }, true);
    const done = (key) => {
      if (window.__reach[key]) return;
      window.__reach[key] = performance.now();
      if (window.__reachMark) window.__reachMark(key);
    };
    document.addEventListener('DOMContentLoaded', () => {
      const v = document.getElementById('video');
      if (!v) return;
      if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => done('frame'));
      v.addEventListener('loadeddata', () => { if (v.videoWidth > 0) done('loadeddata'); });
    });
    // the first Opus packet: polled, since sound has no frame callback
    const poll = setInterval(async () => {
      for (const pc of pcs) {
        if (pc.connectionState === 'closed') continue;
        try {
          const stats = await pc.getStats();
          if (pc.connectionState === 'connected') done('connected');
          stats.forEach((r) => {
            if (r.type !== 'inbound-rtp' || !(r.packetsReceived > 0)) return;
            const kind = r.kind || r.mediaType;
            done(kind === 'audio' ? 'audio' : 'videoPacket');
            if (kind === 'video' && r.framesDecoded > 0) done('decoded');
          });
        } catch { /* closed */ }
      }
      if (window.__reach.audio && (window.__reach.decoded || soundOnly)) clearInterval(poll);
    }, 50);
  }, audioOnly);
}

async function measure(browser, front, patientLink, { audioOnly }) {
  const ctx = await browser.newContext({ ...PHONE, locale: 'zh-CN' });
  await instrument(ctx, { audioOnly });
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  if (THROTTLE) await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: LINK.latency, downloadThroughput: LINK.down / 8, uploadThroughput: LINK.up / 8,
  });
  const requests = new Map(); // requestId → { url, type }
  let wire = 0;               // every encoded HTTP byte finished so far
  let wsBytes = 0;            // WebSocket frames received (payload)
  const files = new Map();    // page files: path → encoded bytes
  cdp.on('Network.responseReceived', (e) => requests.set(e.requestId, { url: e.response.url, type: e.type, mime: e.response.mimeType }));
  cdp.on('Network.loadingFinished', (e) => {
    wire += e.encodedDataLength;
    const r = requests.get(e.requestId);
    if (r && /^(Document|Script|Stylesheet|Image)$/.test(r.type)) files.set(new URL(r.url).pathname, e.encodedDataLength);
  });
  cdp.on('Network.webSocketFrameReceived', (e) => { wsBytes += (e.response.payloadData || '').length; });
  const at = {};
  await page.exposeFunction('__reachMark', (key) => { at[key] = { wire, wsBytes }; });

  await page.goto(front.rebase(patientLink));
  await expect(page.locator('#join-btn')).toBeVisible({ timeout: 60_000 });
  const joinShown = await page.evaluate(() => performance.now());
  await page.click('#join-btn');
  await page.waitForFunction((sound) => (sound ? window.__reach.audio : window.__reach.frame || window.__reach.loadeddata), audioOnly, { timeout: 90_000 });
  await page.waitForTimeout(500);
  const r = await page.evaluate(() => {
    const reach = window.__reach;
    // what the page asked for after the tap, in ms from the tap (the WebSocket is not listed)
    reach.timeline = performance.getEntriesByType('resource').filter((e) => e.startTime >= reach.tap)
      .map((e) => `${new URL(e.name).pathname.replace(/[0-9a-f-]{36}/g, ':id')} ${Math.round(e.startTime - reach.tap)}–${Math.round(e.responseEnd - reach.tap)}`);
    return reach;
  });
  const first = audioOnly ? 'audio' : (r.frame ? 'frame' : 'loadeddata');
  const pageFiles = [...files.entries()].filter(([p]) => p.startsWith('/assets/') || p.startsWith('/s/'));
  const out = {
    mode: audioOnly ? 'sound only' : 'video',
    openToJoinButtonMs: Math.round(joinShown),
    tapToFirstMs: Math.round(r[first] - r.tap),
    openToFirstMs: Math.round(r[first]),
    firstEvent: first,
    bytesBeforeFirst: at[first] ? at[first].wire : null,
    wsBytesBeforeFirst: at[first] ? at[first].wsBytes : null,
    pageWireBytes: pageFiles.reduce((s, [, n]) => s + n, 0),
    afterTap: r.timeline,
    // ms from the tap: ICE+DTLS up, first video RTP, first decoded frame (polled every 50 ms)
    steps: Object.fromEntries(['connected', 'videoPacket', 'decoded', 'audio'].filter((k) => r[k]).map((k) => [k, Math.round(r[k] - r.tap)])),
    pageFiles: Object.fromEntries(pageFiles),
  };
  await ctx.close();
  return out;
}

/** The gzip size of every file the patient page loads, straight from web/ (no server in between). */
async function directGzip(paths) {
  let total = 0;
  let raw = 0;
  for (const p of paths) {
    const file = p.startsWith('/s/') ? 'patient.html' : p.slice(1);
    const body = await readFile(join(WEB, file)).catch(() => null);
    if (!body) continue;
    raw += body.length;
    total += gzipSync(body).length;
  }
  return { gzip: total, raw };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const range = (xs) => [Math.min(...xs), Math.max(...xs)];

test('reach on a weak link: first frame, first sound, bytes, page size', async ({ browser, server }) => {
  test.setTimeout(20 * 60_000);
  const { session, links } = await createSession(server, { title: '弱网测量', expert_name: '王医生' });
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const front = await startWireProxy(server.url);
  const expertCtx = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['camera', 'microphone'] });
  const expert = await expertCtx.newPage();
  await expert.goto(front.rebase(links.expert));
  await expect(expert.locator('#console')).toBeVisible();
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });

  const runs = { video: [], audio: [] };
  for (let i = 0; i < RUNS; i += 1) {
    runs.video.push(await measure(browser, front, links.patient, { audioOnly: false }));
    runs.audio.push(await measure(browser, front, links.patient, { audioOnly: true }));
    console.log(`run ${i + 1}:`, JSON.stringify({ video: { ...runs.video[i], pageFiles: undefined }, audio: { ...runs.audio[i], pageFiles: undefined } }));
  }
  const direct = await directGzip(Object.keys(runs.video[0].pageFiles));
  const sum = (list, key) => ({ median: median(list.map((x) => x[key])), range: range(list.map((x) => x[key])) });
  const report = {
    link: !THROTTLE ? 'not emulated (REACH_LINK=none)' : `${LINK.down / 1000} kbit/s down, ${LINK.up / 1000} kbit/s up, ${LINK.latency} ms latency (CDP Network.emulateNetworkConditions; the browser's WebRTC packets are delayed too)`,
    runs: RUNS,
    video: {
      tapToFirstFrameMs: sum(runs.video, 'tapToFirstMs'),
      openToFirstFrameMs: sum(runs.video, 'openToFirstMs'),
      openToJoinButtonMs: sum(runs.video, 'openToJoinButtonMs'),
      bytesBeforeFirstFrame: sum(runs.video, 'bytesBeforeFirst'),
      firstEvent: runs.video.map((x) => x.firstEvent),
    },
    audio: {
      tapToFirstAudioMs: sum(runs.audio, 'tapToFirstMs'),
      openToFirstAudioMs: sum(runs.audio, 'openToFirstMs'),
      bytesBeforeFirstAudio: sum(runs.audio, 'bytesBeforeFirst'),
    },
    page: {
      wireBytes: sum(runs.video, 'pageWireBytes'),
      directGzipBytes: direct.gzip,
      uncompressedBytes: direct.raw,
      files: runs.video[0].pageFiles,
    },
    raw: runs,
  };
  await mkdir(join(ROOT, 'artifacts'), { recursive: true });
  await writeFile(join(ROOT, 'artifacts', THROTTLE ? 'reach.json' : 'reach-baseline.json'), JSON.stringify(report, null, 2));
  console.log('reach:', JSON.stringify({ ...report, raw: undefined, page: { ...report.page, files: undefined } }, null, 2));
  await expertCtx.close();
  await front.stop();
});
