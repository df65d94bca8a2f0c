// Issue 13.2 in the browser: the expert page sends the camera in three simulcast layers, and a
// patient picks the picture's quality (auto, data saver, sharpest) without a reload or a new WHEP
// session. Real server and relay, Chromium's fake camera. The relay's view comes from the WHEP
// layer extension (GET …/layer with the patient's token). Sizes are asserted, times printed.
// Screenshots: artifacts/screenshots/simulcast-{en,zh}.png, simulcast-offer-{en,zh}.png (a slow network).
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, expect, createSession } from './server.mjs';
import { PHONE, tooSmallOrCut } from './media.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = join(ROOT, 'artifacts', 'screenshots');

async function relayMounted(url, sid) {
  const res = await fetch(`${url}/api/sessions/${sid}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  return res.status !== 404 && res.status !== 405;
}

/** What the expert's page sends: one entry per simulcast layer (rid, size, bytes). */
function sentLayers(expert) {
  return expert.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp' && (r.kind || r.mediaType) === 'video') {
          out.push({ rid: r.rid || '', width: r.frameWidth || 0, height: r.frameHeight || 0, bytes: r.bytesSent || 0, frames: r.framesEncoded || 0, active: r.active !== false, limit: r.qualityLimitationReason });
        }
        if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate) {
          out.push({ rid: 'bwe', width: -1, bytes: r.availableOutgoingBitrate });
        }
      });
    }
    return out.sort((a, b) => a.width - b.width);
  });
}

function framesDecoded(page) {
  return page.evaluate(async () => {
    let frames = 0;
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && (r.kind || r.mediaType) === 'video') frames += r.framesDecoded || 0;
      });
    }
    return frames;
  });
}

function recordPeerConnections(ctx) {
  return ctx.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    if (!Native) return;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) { super(...args); window.__pcs.push(this); }
    };
  });
}

test('simulcast: three layers from the expert; data saver and sharpest on one connection', async ({ browser, server }) => {
  test.setTimeout(150_000);
  const { session, links } = await createSession(server, { title: 'Screening for bowel cancer', expert_name: 'Dr. Lin Hui' });
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const errors = [];

  const expertCtx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', permissions: ['camera', 'microphone'] });
  await recordPeerConnections(expertCtx);
  // simulcast is the expert's choice, off by default (see video.js `simulcastWanted`)
  await expertCtx.addInitScript(() => localStorage.setItem('oncolive.simulcast', 'true'));
  const expert = await expertCtx.newPage();
  expert.on('pageerror', (e) => errors.push(`expert: ${e.message}`));
  await expert.goto(links.expert);
  await expect(expert.locator('#console')).toBeVisible();
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });
  const liveAt = Date.now();
  const whip = await expert.evaluate(() => window.__pcs.at(-1).localDescription.sdp);
  expect(whip).toMatch(/a=simulcast:send l;m;h/);
  // the top layer is the one recorded: how long after going live does it send its first frame?
  await expect.poll(async () => (await sentLayers(expert)).find((l) => l.rid === 'h')?.frames || 0, { timeout: 30_000 }).toBeGreaterThan(0);
  console.log(`the expert's top layer sent its first frame ${Date.now() - liveAt} ms after "Broadcasting."`);

  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  await recordPeerConnections(ctx);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(`patient: ${e.message}`));
  const posts = [];
  const layerPosts = [];
  let resource = null;
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (/\/whep$/.test(path) && r.method() === 'POST') posts.push(r.url());
    if (/\/layer$/.test(path) && r.method() === 'POST') layerPosts.push(r.postData());
  });
  page.on('response', (r) => {
    if (/\/whep$/.test(new URL(r.url()).pathname) && r.status() === 201) resource = new URL(r.headers().location, r.url()).href;
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 30_000 }).toBeGreaterThan(0);
  const token = await page.evaluate((sid) => JSON.parse(localStorage.getItem(`oncolive.patient.${sid}`)).token, session.id);
  const layerState = async () => {
    const res = await fetch(`${resource}/layer`, { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    return res.json();
  };

  // The relay receives the three layers the page sends.
  await expect.poll(async () => (await layerState()).layers.length, { timeout: 30_000 }).toBe(3);
  const relayView = await layerState();
  const sent = await sentLayers(expert);
  console.log(`relay: ${JSON.stringify(relayView.layers)}; expert sends ${JSON.stringify(sent)}`);
  expect(relayView.layers.map((l) => l.rid)).toEqual(['l', 'm', 'h']);
  const top = sent.filter((l) => l.rid !== 'bwe').at(-1);
  const smallest = sent.find((l) => l.rid !== 'bwe');
  expect(top.width).toBeGreaterThan(smallest.width);
  await expect(page.locator('#sel-quality')).toBeVisible();
  await expect(page.locator('#sel-quality')).toHaveValue('auto');

  // Data saver: the smallest picture.
  let t0 = Date.now();
  await page.selectOption('#sel-quality', 'low');
  await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 20_000 }).toBeLessThanOrEqual(smallest.width);
  const lowAfter = Date.now() - t0;
  expect((await layerState()).current).toBe('l');
  const framesLow = await framesDecoded(page);

  // Sharpest: the top layer, on the same connection, once the expert's browser has ramped it up
  // (its bandwidth estimate starts low and serves the smallest layers first).
  const rampStart = Date.now();
  await expect.poll(async () => (await layerState()).layers.find((l) => l.rid === 'h')?.bitrate_bps || 0, { timeout: 60_000 }).toBeGreaterThan(250_000);
  console.log(`the top layer carried 250 kbit/s ${Date.now() - rampStart} ms after data saver was set`);
  t0 = Date.now();
  await page.selectOption('#sel-quality', 'high');
  await expect.poll(async () => {
    const w = await page.$eval('#video', (v) => v.videoWidth);
    if (w !== top.width) console.log(`waiting for ${top.width}: ${w}, relay ${JSON.stringify(await layerState())}`);
    return w;
  }, { timeout: 20_000, intervals: [1000] }).toBe(top.width);
  const highAfter = Date.now() - t0;
  expect((await layerState()).current).toBe('h');
  await expect.poll(() => framesDecoded(page), { timeout: 10_000 }).toBeGreaterThan(framesLow + 10);
  console.log(`data saver → ${smallest.width} px wide in ${lowAfter} ms; sharpest → ${top.width} px in ${highAfter} ms`);
  test.info().annotations.push({ type: 'simulcast', description: `layers ${JSON.stringify(relayView.layers)}; low in ${lowAfter} ms, high in ${highAfter} ms` });
  expect(posts).toHaveLength(1);
  expect(layerPosts.map((b) => JSON.parse(b).prefer)).toEqual(['low', 'high']);

  // The choice is kept: a reload asks for it on the new resource.
  await page.reload();
  await expect.poll(() => layerPosts.length, { timeout: 30_000 }).toBe(3);
  expect(JSON.parse(layerPosts[2]).prefer).toBe('high');
  await expect(page.locator('#sel-quality')).toHaveValue('high');
  await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 30_000 }).toBe(top.width);

  await mkdir(SHOTS, { recursive: true });
  expect(await tooSmallOrCut(page, 14)).toEqual([]);
  await page.screenshot({ path: join(SHOTS, 'simulcast-en.png') });

  // A slow network (the browser says so): the page suggests the smaller picture first, and
  // sound only once the patient is on it.
  await page.evaluate(() => Object.defineProperty(navigator, 'connection', {
    configurable: true, value: { effectiveType: '2g', downlink: 0.2, saveData: false, addEventListener() {} },
  }));
  await expect(page.locator('#btn-offer-saver')).toBeVisible({ timeout: 15_000 });
  await expect(page.locator('#btn-offer-audio')).toBeHidden();
  await expect(page.locator('#v-offer-text')).toHaveText('Your network is slow. A smaller picture uses less data and keeps moving.');
  expect(await tooSmallOrCut(page, 14)).toEqual([]);
  await page.screenshot({ path: join(SHOTS, 'simulcast-offer-en.png') });
  await page.click('#lang');
  await expect(page.locator('#sel-quality option[value="low"]')).toHaveText('画质：省流量');
  await expect(page.locator('#btn-offer-saver')).toHaveText('省流量');
  expect(await tooSmallOrCut(page, 14)).toEqual([]);
  await page.screenshot({ path: join(SHOTS, 'simulcast-offer-zh.png') });
  const postsBefore = layerPosts.length;
  await page.click('#btn-offer-saver');
  await expect(page.locator('#sel-quality')).toHaveValue('low');
  await expect.poll(() => layerPosts.length).toBe(postsBefore + 1);
  expect(JSON.parse(layerPosts.at(-1)).prefer).toBe('low');
  await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 20_000 }).toBeLessThanOrEqual(smallest.width);
  await expect(page.locator('#btn-offer-audio')).toBeVisible({ timeout: 15_000 });
  await expect(page.locator('#btn-offer-saver')).toBeHidden();
  expect(await page.evaluate(() => localStorage.getItem('oncolive.quality'))).toBe('"low"');
  expect(await tooSmallOrCut(page, 14)).toEqual([]);
  await page.screenshot({ path: join(SHOTS, 'simulcast-zh.png') });
  expect(errors).toEqual([]);
  await ctx.close();
  await expertCtx.close();
});
