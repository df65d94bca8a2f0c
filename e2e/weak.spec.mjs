// Issue 13, the patient page: weak phones, weak networks, older eyes.
//
// - sound only: the WHEP subscription carries Opus alone (no inbound video RTP), its wire rate
//   measured from the transport's bytesReceived over ~10 s (< 64 kbit/s), back to video without
//   a reload, the hub socket and "my questions" untouched. Real server, real relay, the expert
//   publishing the fake camera from a second context. Skipped without a relay.
// - a question asked with the socket down is kept (localStorage too: a reload keeps it), shown
//   as waiting for the network, and stored exactly once when the socket is back.
// - 360×640 in both languages: nothing under 14 px, body text 16 px, tabs not cut off, tap
//   targets, toasts clear of the ask box, full screen, landscape at 640×360.
// - the waiting page: countdown to the start, "shortly" after it, add to calendar (.ics).
// Screenshots: artifacts/screenshots/weak-*.png.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, expect, createSession } from './server.mjs';
import { PHONE, setState, tooSmallOrCut, smallTargets } from './media.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = join(ROOT, 'artifacts', 'screenshots');
const DESKTOP = { viewport: { width: 1280, height: 800 } };

/** The screen as the phone shows it, from the top (a sticky header looks odd mid-scroll) unless `keepScroll`. */
async function shot(page, name, { fullPage = false, keepScroll = false } = {}) {
  await mkdir(SHOTS, { recursive: true });
  await page.evaluate((top) => {
    for (const el of document.querySelectorAll('.toast')) el.remove();
    if (top) window.scrollTo(0, 0);
  }, !keepScroll);
  await page.screenshot({ path: join(SHOTS, `weak-${name}.png`), fullPage });
}

function watchErrors(page, label, errors) {
  page.on('pageerror', (e) => errors.push(`${label}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`${label}: ${m.text()}`);
  });
}

async function relayMounted(url, sid) {
  const res = await fetch(`${url}/api/sessions/${sid}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  return res.status !== 404 && res.status !== 405;
}

/** Every RTCPeerConnection the page makes, in `window.__pcs` (to read its getStats). */
function recordPeerConnections(ctx) {
  return ctx.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    if (!Native) return;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        window.__pcs.push(this);
      }
    };
  });
}

/** What the page's current peer connection receives: RTP by kind, and the transport's bytes. */
function currentStats(page) {
  return page.evaluate(async () => {
    const pc = [...(window.__pcs || [])].reverse().find((p) => p.connectionState !== 'closed');
    if (!pc) return null;
    const out = { state: pc.connectionState, audio: 0, audioPackets: 0, video: 0, videoPackets: 0, transport: 0, pair: 0, pairPackets: 0, at: performance.now() };
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        const kind = r.kind || r.mediaType;
        out[kind] += r.bytesReceived || 0;
        out[`${kind}Packets`] += r.packetsReceived || 0;
      }
      if (r.type === 'transport') {
        out.transport += r.bytesReceived || 0;
        pairId = r.selectedCandidatePairId || pairId;
      }
    });
    const pair = pairId && stats.get(pairId);
    if (pair) {
      out.pair = pair.bytesReceived || 0;
      out.pairPackets = pair.packetsReceived || 0;
    }
    out.transceivers = pc.getTransceivers().map((t) => t.receiver.track.kind);
    return out;
  });
}

/** Video frames flow: a size, and currentTime moving. */
async function expectMovingVideo(page, selector = '#video') {
  await expect.poll(() => page.$eval(selector, (v) => v.videoWidth), { timeout: 30_000 }).toBeGreaterThan(0);
  const t0 = await page.$eval(selector, (v) => v.currentTime);
  await expect.poll(() => page.$eval(selector, (v) => v.currentTime), { timeout: 10_000 }).toBeGreaterThan(t0 + 0.5);
}

async function goLive(browser, links, errors) {
  const expertCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US', permissions: ['camera', 'microphone'] });
  const expert = await expertCtx.newPage();
  watchErrors(expert, 'expert', errors);
  await expert.goto(links.expert);
  await expect(expert.locator('#console')).toBeVisible();
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });
  return { expertCtx, expert };
}

async function joinAndAsk(page, link, text) {
  await page.goto(link);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await page.fill('#ask-text', text);
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
}

const boxesIntersect = (a, b) => !!a && !!b && a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

// ---------------------------------------------------------------------------------------------

test('sound only: Opus alone, under 64 kbit/s on the wire, and back to video with the questions kept', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Living with a stoma', expert_name: 'Dr. Zhou Min' });
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const errors = [];
  const QUESTION = 'Can I swim with a stoma bag?';
  const { expertCtx } = await goLive(browser, links, errors);

  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  await recordPeerConnections(ctx);
  const page = await ctx.newPage();
  watchErrors(page, 'patient', errors);
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const deletes = [];
  const posts = [];
  page.on('request', (r) => {
    if (/\/whep\/[^/]+$/.test(new URL(r.url()).pathname) && r.method() === 'DELETE') deletes.push(r.url());
    if (/\/whep$/.test(new URL(r.url()).pathname) && r.method() === 'POST') posts.push(r.postData() || '');
  });
  await joinAndAsk(page, links.patient, QUESTION);
  await expect(page.locator('#mine .q', { hasText: QUESTION })).toContainText('Waiting for review');
  await expectMovingVideo(page);
  await expect(page.locator('#btn-audio')).toHaveText('Sound only');

  // ---- sound only ----
  await page.click('#btn-audio');
  await expect(page.locator('#btn-audio')).toHaveAttribute('aria-pressed', 'true');
  await expect(page.locator('#btn-audio')).toHaveText('Show the video');
  await expect.poll(() => posts.length).toBe(2);
  expect(posts[1]).toContain('m=audio');
  expect(posts[1]).not.toContain('m=video');
  await expect.poll(() => deletes.length).toBe(1);
  // the audio-only picture: who is speaking, not a black video
  await expect(page.locator('#v-overlay')).toBeVisible();
  await expect(page.locator('#v-title')).toHaveText('Sound only', { timeout: 15_000 });
  await expect(page.locator('#v-detail')).toContainText('Dr. Zhou Min');
  await expect(page.locator('#v-audio')).toBeVisible();
  await expect.poll(async () => (await currentStats(page))?.audio || 0, { timeout: 15_000 }).toBeGreaterThan(0);
  const first = await currentStats(page);
  expect(first.transceivers).toEqual(['audio']);
  await page.waitForTimeout(10_000);
  const last = await currentStats(page);
  const secs = (last.at - first.at) / 1000;
  expect(last.video).toBe(0);
  expect(last.videoPackets).toBe(0);
  expect(last.audio).toBeGreaterThan(first.audio);
  const kbps = (last.transport - first.transport) * 8 / secs / 1000;
  const payloadKbps = (last.audio - first.audio) * 8 / secs / 1000;
  const packets = last.pairPackets - first.pairPackets;
  // with IPv4 + UDP headers (28 bytes a datagram) as a router would count them
  const ipKbps = ((last.pair - first.pair) + 28 * packets) * 8 / secs / 1000;
  const figure = `sound only over ${secs.toFixed(1)} s: transport bytesReceived ${kbps.toFixed(1)} kbit/s `
    + `(RTP/SRTP/RTCP/DTLS/STUN), ${ipKbps.toFixed(1)} kbit/s with IPv4+UDP headers (${packets} datagrams), `
    + `Opus RTP payload ${payloadKbps.toFixed(1)} kbit/s; inbound video bytes ${last.video}`;
  console.log(figure);
  test.info().annotations.push({ type: 'audio-only', description: figure });
  expect(kbps).toBeGreaterThan(0);
  expect(kbps).toBeLessThan(64);
  await shot(page, 'audio-en');
  await page.click('#lang');
  await expect(page.locator('#v-title')).toHaveText('只听声音');
  await expect(page.locator('#btn-audio')).toHaveText('恢复画面');
  expect(await tooSmallOrCut(page, 14)).toEqual([]);
  await shot(page, 'audio-zh');
  await page.click('#lang');

  // ---- back to video, no reload ----
  await page.click('#btn-audio');
  await expect(page.locator('#btn-audio')).toHaveAttribute('aria-pressed', 'false');
  await expectMovingVideo(page);
  await expect(page.locator('#v-overlay')).toBeHidden();
  await expect.poll(() => deletes.length).toBe(2);
  const back = await currentStats(page);
  expect(back.transceivers).toEqual(['video', 'audio']);
  // the hub socket was never touched, and the question is still mine
  expect(sockets).toHaveLength(1);
  await page.click('#tab-mine');
  await expect(page.locator('#mine .q', { hasText: QUESTION })).toHaveCount(1);
  expect(await page.evaluate(() => performance.getEntriesByType('navigation').length)).toBe(1);
  expect(errors).toEqual([]);
  await ctx.close();
  await expertCtx.close();
});

test('the picture does not come while the expert is on camera: the page offers sound only', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Stalled picture', expert_name: 'Dr. Stall' });
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const errors = [];
  const { expertCtx } = await goLive(browser, links, errors);
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  watchErrors(page, 'patient', errors);
  // the video cannot be had on this network: every WHEP offer with a video section is refused
  await page.route(/\/api\/sessions\/[^/]+\/whep$/, (route) => {
    const req = route.request();
    if (req.method() === 'POST' && /m=video/.test(req.postData() || '')) return route.fulfill({ status: 503, body: '' });
    return route.fallback();
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await expect(page.locator('#v-offer')).toBeVisible({ timeout: 20_000 });
  await expect(page.locator('#v-offer')).toContainText('The picture keeps stopping');
  // the expert is there: no "waiting for the expert", no countdown
  await expect(page.locator('#v-title')).not.toHaveText('Waiting for the expert');
  await expect(page.locator('#v-countdown')).toBeHidden();
  expect(await smallTargets(page, '#v-offer')).toEqual([]);
  await shot(page, 'offer-en');
  await page.click('#btn-offer-audio');
  await expect(page.locator('#v-offer')).toBeHidden();
  await expect(page.locator('#v-title')).toHaveText('Sound only', { timeout: 20_000 });
  await expect(page.locator('#btn-audio')).toHaveAttribute('aria-pressed', 'true');
  expect(await page.$eval('#video', (v) => v.muted)).toBe(false);
  expect(errors).toEqual([]);
  await ctx.close();
  await expertCtx.close();
});

test('a question asked with the socket down is kept, survives a reload and is stored once', async ({ browser, server }) => {
  const { session, links, tokens } = await createSession(server, { title: 'Offline questions' });
  const errors = [];
  const QUESTION = 'Should I keep taking tamoxifen while travelling?';
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  watchErrors(page, 'patient', errors);
  let offline = false;
  const open = [];
  let asks = 0;
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    if (offline) {
      // no network: the socket cannot open
      ws.close({ code: 1011, reason: 'offline' });
      return;
    }
    const upstream = ws.connectToServer();
    open.push({ ws, upstream });
    ws.onMessage((m) => {
      if (JSON.parse(String(m)).type === 'ask') asks += 1;
      upstream.send(m);
    });
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');

  // ---- the network goes ----
  offline = true;
  await ctx.setOffline(true);
  for (const { ws, upstream } of open.splice(0)) {
    await ws.close({ code: 1011, reason: 'offline' });
    await upstream.close();
  }
  await expect(page.locator('#conn')).toHaveAttribute('data-state', /^(reconnecting|offline)$/);
  await page.fill('#ask-text', QUESTION);
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await expect(page.locator('#ask-btn')).toBeEnabled();
  await page.click('#ask-btn');
  const waiting = page.locator('#mine .q.local', { hasText: QUESTION });
  await expect(waiting).toContainText('Waiting for the network: it will be sent');
  await expect(page.locator('.toast', { hasText: 'Your question is kept' })).toBeVisible();
  await expect(page.locator('#ask-text')).toHaveValue('');
  const kept = await page.evaluate((sid) => localStorage.getItem(`oncolive.outbox.${sid}`), session.id);
  expect(JSON.parse(kept).map((e) => e.text)).toEqual([QUESTION]);
  await waiting.evaluate((el) => el.scrollIntoView({ block: 'center' }));
  await shot(page, 'offline-en', { keepScroll: true });

  // ---- a reload (the page loads, the socket still cannot open) keeps it ----
  await ctx.setOffline(false);
  await page.reload();
  await expect(page.locator('#live')).toBeVisible();
  await page.click('#tab-mine');
  await expect(page.locator('#mine .q.local', { hasText: QUESTION })).toContainText('Waiting for the network');
  expect(asks).toBe(0);

  // ---- the network is back: sent once, then "waiting for review" ----
  offline = false;
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online', { timeout: 30_000 });
  await expect(page.locator('#mine .q', { hasText: QUESTION })).toContainText('Waiting for review');
  await expect(page.locator('#mine .q.local')).toHaveCount(0);
  await expect(page.locator('#mine .q')).toHaveCount(1);
  expect(await page.evaluate((sid) => localStorage.getItem(`oncolive.outbox.${sid}`), session.id)).toBeNull();
  // another reconnect does not send it again
  for (const { ws, upstream } of open.splice(0)) {
    await ws.close({ code: 4000, reason: 'too slow' });
    await upstream.close();
  }
  await expect.poll(() => open.length, { timeout: 15_000 }).toBe(1);
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await page.waitForTimeout(1000);
  expect(asks).toBe(1);

  // the server holds exactly one copy (the moderator sees every question)
  const modCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US' });
  const mod = await modCtx.newPage();
  await mod.goto(links.moderator);
  await expect(mod.locator('#console')).toBeVisible();
  await expect(mod.locator('#stat-pending')).toHaveText('1');
  await expect(mod.locator('#list .q', { hasText: QUESTION })).toHaveCount(1);
  expect(tokens.moderator).toBeTruthy();
  expect(errors).toEqual([]);
  await modCtx.close();
  await ctx.close();
});

for (const lang of ['zh', 'en']) {
  test(`a page for old eyes at 360×640 and 640×360 (${lang})`, async ({ browser, server }) => {
    const { session, links } = await createSession(server, { title: lang === 'zh' ? '乳腺癌术后如何复查' : 'Check-ups after breast cancer surgery', expert_name: lang === 'zh' ? '王丽医生' : 'Dr. Wang Li' });
    const errors = [];
    const relay = await relayMounted(server.url, session.id);
    let expertCtx = null;
    if (relay) ({ expertCtx } = await goLive(browser, links, errors));
    else await setState(server, session.id, 'live');
    const ctx = await browser.newContext({ ...PHONE, locale: lang === 'zh' ? 'zh-CN' : 'en-US' });
    const page = await ctx.newPage();
    watchErrors(page, 'patient', errors);
    const QUESTION = lang === 'zh' ? '术后多久复查一次？' : 'How often should I have a check-up after surgery?';
    await joinAndAsk(page, links.patient, QUESTION);
    await expect(page.locator('#mine .q', { hasText: QUESTION })).toHaveCount(1);
    if (relay) await expectMovingVideo(page);
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- sizes: nothing under 14 px, body text 16 px and up ----
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    const sizes = await page.evaluate(() => ['body', '#ask-text', '#mine .q .text', '#s-title', '#disclaimer']
      .map((sel) => [sel, parseFloat(getComputedStyle(document.querySelector(sel)).fontSize)]));
    for (const [sel, px] of sizes) expect(px, sel).toBeGreaterThanOrEqual(16);
    // ---- tabs never cut off ----
    const cut = await page.evaluate(() => [document.querySelector('#tabs'), ...document.querySelectorAll('#tabs button, #tabs button span')]
      .filter((el) => el.scrollWidth > el.clientWidth + 0.5 && getComputedStyle(el).display !== 'inline')
      .map((el) => `${el.id || el.className}: ${el.scrollWidth} > ${el.clientWidth}`));
    expect(cut).toEqual([]);
    expect(await smallTargets(page, 'main')).toEqual([]);
    expect(await smallTargets(page, '.topbar')).toEqual([]);
    // ---- the video on top, the ask box within thumb's reach without scrolling ----
    const stage = await page.locator('#stage').boundingBox();
    const ask = await page.locator('#ask-text').boundingBox();
    expect(stage.y).toBeLessThan(ask.y);
    expect(ask.y + ask.height).toBeLessThanOrEqual(640);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await shot(page, `live-${lang}`);
    await page.click('#tab-mine');
    await shot(page, `mine-${lang}`, { fullPage: true });

    // ---- toasts never cover the ask box: at the top of the page, and with the box up there ----
    for (const at of ['top', 'ask']) {
      if (at === 'ask') await page.locator('#ask').evaluate((el) => el.scrollIntoView({ block: 'start' }));
      await page.evaluate(() => import('/assets/js/dom.js').then((m) => m.toast('A message that is long enough to take two lines on a small phone screen', { ms: 4000 })));
      const toastBox = await page.locator('.toast').last().boundingBox();
      const askBox = await page.locator('#ask').boundingBox();
      expect(toastBox, 'a toast is shown').not.toBeNull();
      expect(boxesIntersect(toastBox, askBox), `toast ${JSON.stringify(toastBox)} covers the ask box ${JSON.stringify(askBox)} (${at})`).toBe(false);
      await page.evaluate(() => { for (const el of document.querySelectorAll('.toast')) el.remove(); });
    }
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- full screen: the player (picture and its buttons) ----
    await expect(page.locator('#btn-fullscreen')).toBeVisible();
    await page.click('#btn-fullscreen');
    await expect.poll(() => page.evaluate(() => document.fullscreenElement && document.fullscreenElement.id)).toBe('player');
    await expect(page.locator('#btn-fullscreen')).toHaveText(lang === 'zh' ? '退出全屏' : 'Leave full screen');
    await page.click('#btn-fullscreen');
    await expect.poll(() => page.evaluate(() => document.fullscreenElement)).toBeNull();

    // ---- landscape 640×360: the video fills the height, its buttons on screen ----
    await page.setViewportSize({ width: 640, height: 360 });
    await page.locator('#player').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    const player = await page.locator('#stage').boundingBox();
    expect(player.height).toBeGreaterThanOrEqual(350);
    expect(player.y).toBeGreaterThanOrEqual(-1);
    for (const sel of ['#btn-audio', '#btn-fullscreen']) {
      const b = await page.locator(sel).boundingBox();
      expect(b, sel).not.toBeNull();
      expect(b.y + b.height, `${sel} on screen`).toBeLessThanOrEqual(360);
      expect(b.x + b.width, `${sel} on screen`).toBeLessThanOrEqual(640);
      expect(b.height).toBeGreaterThanOrEqual(44);
    }
    if (relay) {
      const v = await page.locator('#video').boundingBox();
      expect(v.height).toBeGreaterThanOrEqual(350);
    }
    expect(await tooSmallOrCut(page, 14, '#player')).toEqual([]);
    await shot(page, `landscape-${lang}`, { keepScroll: true });
    expect(errors).toEqual([]);
    await ctx.close();
    if (expertCtx) await expertCtx.close();
  });
}

test('the waiting page: a countdown, then "shortly"; add to calendar', async ({ browser, server, request }) => {
  const startsAt = new Date(Date.now() + 90 * 60_000);
  const TITLE = 'Eating well during chemotherapy';
  const { session, links } = await createSession(server, { title: TITLE, scheduled_start: startsAt.toISOString() });
  const errors = [];
  for (const lang of ['en', 'zh']) {
    const ctx = await browser.newContext({ ...PHONE, locale: lang === 'zh' ? 'zh-CN' : 'en-US' });
    const page = await ctx.newPage();
    watchErrors(page, `patient-${lang}`, errors);
    await page.goto(links.patient);
    // before joining
    const countdown = page.locator('#join-countdown');
    await expect(countdown).toHaveText(lang === 'zh' ? /^距开始还有 01:[23]\d:\d\d$/ : /^Starts in 01:[23]\d:\d\d$/);
    const before = await countdown.textContent();
    await expect.poll(() => countdown.textContent(), { timeout: 5000 }).not.toBe(before);
    const cal = page.locator('#join-calendar');
    await expect(cal).toHaveAttribute('href', `/api/sessions/${session.id}/calendar.ics`);
    await shot(page, `join-waiting-${lang}`);
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    // joined: the stage counts down too, the calendar link is under it
    await page.click('#join-btn');
    await expect(page.locator('#v-title')).toHaveText(lang === 'zh' ? '直播尚未开始' : 'The session has not started yet');
    await expect(page.locator('#v-countdown')).toHaveText(/\d\d:\d\d:\d\d$/);
    await expect(page.locator('#btn-calendar')).toHaveAttribute('href', `/api/sessions/${session.id}/calendar.ics`);
    await expect(page.locator('#btn-calendar')).toHaveText(lang === 'zh' ? '添加到我的日历' : 'Add to my calendar');
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    expect(await smallTargets(page, 'main')).toEqual([]);
    await shot(page, `stage-waiting-${lang}`);
    await ctx.close();
  }
  const ics = await request.get(`${server.url}/api/sessions/${session.id}/calendar.ics`);
  expect(ics.status()).toBe(200);
  expect(ics.headers()['content-type']).toMatch(/^text\/calendar/);
  const body = await ics.text();
  expect(body).toContain(`SUMMARY:${TITLE}`);
  expect(body).toContain(links.patient);

  // a start time that has passed, the expert not there yet: "shortly"
  const late = await createSession(server, { title: 'Late start', scheduled_start: new Date(Date.now() - 5 * 60_000).toISOString() });
  for (const lang of ['en', 'zh']) {
    const ctx = await browser.newContext({ ...PHONE, locale: lang === 'zh' ? 'zh-CN' : 'en-US' });
    const page = await ctx.newPage();
    watchErrors(page, `late-${lang}`, errors);
    await page.goto(late.links.patient);
    await expect(page.locator('#join-countdown')).toBeHidden();
    await page.click('#join-btn');
    await expect(page.locator('#v-title')).toHaveText(lang === 'zh' ? '专家马上就到' : 'The expert will be here shortly');
    await expect(page.locator('#v-countdown')).toBeHidden();
    await shot(page, `shortly-${lang}`);
    await ctx.close();
  }
  // live, start passed, nobody publishing: still "shortly"
  await setState(server, late.session.id, 'live');
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  await page.goto(late.links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#v-title')).toHaveText('The expert will be here shortly');
  await expect(page.locator('#btn-calendar')).toBeHidden();
  await ctx.close();
  expect(errors).toEqual([]);
});

for (const [locale, lang, notSent] of [['en-US', 'en', 'Not sent: the session had ended'], ['zh-CN', 'zh', '未发送：直播已结束']]) {
  test(`a question kept while offline, when the session ends meanwhile, is shown as not sent and dropped (${lang})`, async ({ browser, server }) => {
    const { session, links } = await createSession(server, { title: 'Eating well during chemotherapy', expert_name: 'Dr. Chen' });
    const QUESTION = lang === 'zh' ? '化疗期间可以吃海鲜吗？' : 'Can I eat seafood during chemotherapy?';
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    let offline = false;
    const open = [];
    await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
      if (offline) return ws.close({ code: 1011, reason: 'offline' });
      open.push({ ws, upstream: ws.connectToServer() });
    });
    await page.goto(links.patient);
    await page.click('#join-btn');
    await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
    offline = true;
    await ctx.setOffline(true);
    for (const { ws, upstream } of open.splice(0)) {
      await ws.close({ code: 1011, reason: 'offline' });
      await upstream.close();
    }
    await page.fill('#ask-text', QUESTION);
    if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
    await page.click('#ask-btn');
    await expect(page.locator('#mine .q.local', { hasText: QUESTION })).toHaveCount(1);
    // the host ends the session while the phone is offline
    const end = await fetch(`${server.url}/api/sessions/${session.id}/state`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` }, body: JSON.stringify({ state: 'ended' }),
    });
    expect(end.status).toBe(200);
    offline = false;
    await ctx.setOffline(false);
    await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online', { timeout: 30_000 });
    const card = page.locator('#mine .q.local', { hasText: QUESTION });
    await expect(card.locator('.pill.unsent')).toHaveText(notSent);
    expect(await page.evaluate((sid) => localStorage.getItem(`oncolive.outbox.${sid}`), session.id)).toBeNull();
    await page.click('#tab-mine');
    await card.evaluate((el) => el.scrollIntoView({ block: 'center' }));
    await shot(page, `unsent-ended-${lang}`, { keepScroll: true });
    await ctx.close();
  });
}
