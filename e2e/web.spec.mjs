// The whole web app against the real server: a host schedules a session, the expert goes live
// with the fake camera, two patients on phones (Chinese and English) watch, ask and vote, the
// moderator screens, the expert answers. Screenshots go to artifacts/screenshots/.
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { test, expect } from './server.mjs';
import { startWireProxy } from './wire.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = join(ROOT, 'artifacts', 'screenshots');
const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 800 } };

const Q1 = '肺结节多大需要手术？';
const Q2 = 'Is a low-dose CT scan every year safe?';
const Q3 = 'Please call me at 13800000000 about my results';
const ANSWER = 'Yes: for people at high risk the yearly dose is small and the benefit is larger.';

async function shot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  // toasts are transient; a sticky header looks odd in a full-page shot taken mid-scroll
  await page.evaluate(() => {
    for (const el of document.querySelectorAll('.toast')) el.remove();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Fail the test on any script error or CSP violation a page reports. */
function watchErrors(page, label, errors) {
  page.on('pageerror', (e) => errors.push(`${label}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`${label}: ${m.text()}`);
  });
}

/** Is the WHIP/WHEP relay mounted in this server? (401 without a token means the route exists.) */
async function relayMounted(request, url, sid) {
  const res = await request.post(`${url}/api/sessions/${sid}/whep`, { headers: { 'Content-Type': 'application/sdp' }, data: 'v=0' });
  return res.status() !== 404 && res.status() !== 405;
}

/** Video frames flow: a size, and currentTime moving. */
async function expectMovingVideo(page, selector) {
  await expect.poll(() => page.$eval(selector, (v) => v.videoWidth), { timeout: 30_000 }).toBeGreaterThan(0);
  const t0 = await page.$eval(selector, (v) => v.currentTime);
  await expect.poll(() => page.$eval(selector, (v) => v.currentTime), { timeout: 10_000 }).toBeGreaterThan(t0 + 0.5);
}

const queueTexts = (page) => page.locator('#queue .q .text').allTextContents();

test('a session from scheduling to answers, on every screen', async ({ browser, server, request }) => {
  const errors = [];
  const perf = {};

  // ---- host schedules a session ----
  const hostCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const host = await hostCtx.newPage();
  watchErrors(host, 'host', errors);
  await host.goto(`${server.url}/host#token=${server.admin_token}`);
  await expect(host).not.toHaveURL(/token=/);
  await host.fill('#f-title', 'Breast cancer after 60: what changes');
  await host.fill('#f-topic', 'Screening, treatment choices, living well');
  await host.fill('#f-expert', 'Dr. Li Na');
  await host.locator('input[name="moderation"][value="pre"]').check();
  await host.click('#create-btn');
  const row = host.locator('.session-card', { hasText: 'Breast cancer after 60' });
  await expect(row.locator('input[data-link="patient"]')).toBeVisible();
  const patientLink = await row.locator('input[data-link="patient"]').inputValue();
  const expertLink = await row.locator('input[data-link="expert"]').inputValue();
  const moderatorLink = await row.locator('input[data-link="moderator"]').inputValue();
  expect(expertLink).toContain('#token=');
  await expect.poll(() => row.locator('img.qr').evaluate((img) => img.naturalWidth)).toBeGreaterThan(0);
  await shot(host, 'host-phone');
  await row.getByRole('button', { name: 'Print poster' }).click();
  await host.emulateMedia({ media: 'print' });
  await expect(host.locator('.print-root .poster')).toBeVisible();
  await shot(host, 'host-poster-print');
  await host.emulateMedia({ media: 'screen' });
  const sid = new URL(patientLink).pathname.split('/')[2];
  const video = await relayMounted(request, server.url, sid);
  const note = video ? 'relay mounted: video checked' : 'relay not mounted: video not checked';
  test.info().annotations.push({ type: 'video', description: note });
  console.log(note);

  // ---- expert goes live ----
  const expertCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US', permissions: ['camera', 'microphone'] });
  const expert = await expertCtx.newPage();
  watchErrors(expert, 'expert', errors);
  await expert.goto(expertLink);
  await expect(expert.locator('#console')).toBeVisible();
  await expect(expert).not.toHaveURL(/token=/);
  await expect(expert.locator('#state-line')).toHaveText('Upcoming');
  await expert.click('#btn-live');
  await expect(expert.locator('#state-line')).toHaveText('Live now');
  await expectMovingVideo(expert, '#preview');
  if (video) await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });

  // ---- moderator opens the console ----
  const modCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US' });
  const mod = await modCtx.newPage();
  watchErrors(mod, 'moderator', errors);
  await mod.goto(moderatorLink);
  await expect(mod.locator('#console')).toBeVisible();
  await expect(mod.locator('#list')).toContainText('Nothing to review');

  // ---- two patients on phones join ----
  const zhCtx = await browser.newContext({ ...PHONE, locale: 'zh-CN' });
  const enCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const zh = await zhCtx.newPage();
  const en = await enCtx.newPage();
  watchErrors(zh, 'patient-zh', errors);
  watchErrors(en, 'patient-en', errors);
  await zh.goto(patientLink);
  await en.goto(patientLink);
  await expect(zh.locator('#join-btn')).toHaveText('进入直播');
  await expect(en.locator('#join-btn')).toHaveText('Join the session');
  perf.coldJoinPage = await paintTimes(en);
  await shot(zh, 'patient-join-zh');
  // the page takes its limits from GET /api/limits, not from a copy of its own
  await expect(zh.locator('#join-name')).toHaveAttribute('maxlength', '40');
  await zh.fill('#join-name', '张阿姨');
  await zh.click('#join-btn');
  await en.fill('#join-name', 'Alice');
  await en.click('#join-btn');
  for (const p of [zh, en]) {
    await expect(p.locator('#live')).toBeVisible();
    await expect(p.locator('#conn')).toHaveAttribute('data-state', 'online');
  }
  await expect(zh.locator('#badge-live')).toBeVisible();
  if (video) {
    await expectMovingVideo(zh, '#video');
    await expectMovingVideo(en, '#video');
    await expect(en.locator('#unmute')).toBeVisible();
    await en.click('#unmute');
    await expect(en.locator('#unmute')).toBeHidden();
    expect(await en.$eval('#video', (v) => v.muted)).toBe(false);
  }
  // the two patients (servers that count staff too, as before issue 13, show 3)
  await expect(expert.locator('#stat-viewers')).toHaveText(/^[2-9]$/, { timeout: 10_000 });

  // ---- they ask ----
  await zh.fill('#ask-text', Q1);
  await expect(zh.locator('#ask-count')).toHaveText(`${Array.from(Q1).length} / 500`);
  // the privacy notice is agreed to once, before the first question
  if (await zh.locator('#consent').isVisible()) await zh.check('#consent-box');
  await zh.click('#ask-btn');
  await expect(zh.locator('#mine .q', { hasText: Q1 })).toContainText('等待审核');
  await en.fill('#ask-text', Q2);
  // the privacy notice is agreed to once, before the first question
  if (await en.locator('#consent').isVisible()) await en.check('#consent-box');
  await en.click('#ask-btn');
  await en.fill('#ask-text', Q3);
  // the privacy notice is agreed to once, before the first question
  if (await en.locator('#consent').isVisible()) await en.check('#consent-box');
  await en.click('#ask-btn');
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText('Waiting for review');
  await expect(en.locator('#mine .q', { hasText: Q3 })).toContainText('Waiting for review');
  await expect(en.locator('#queue')).toContainText('No questions yet');
  await expect(mod.locator('#stat-pending')).toHaveText('3');

  // ---- moderator: approve by click, approve by key, reject by key with a ready reason ----
  await mod.locator('#list .q', { hasText: Q1 }).getByRole('button', { name: 'Approve' }).click();
  await expect(mod.locator('#stat-approved')).toHaveText('1');
  await expect(mod.locator('#list .q.selected')).toContainText(Q2);
  await mod.keyboard.press('a');
  await expect(mod.locator('#stat-approved')).toHaveText('2');
  await expect(mod.locator('#list .q.selected')).toContainText(Q3);
  await mod.keyboard.press('r');
  await expect(mod.locator('#list .q.selected .panel')).toBeVisible();
  await mod.keyboard.press('1');
  await expect(mod.locator('#stat-rejected')).toHaveText('1');
  await expect(mod.locator('#stat-pending')).toHaveText('0');
  await shot(mod, 'moderator-desktop');

  // every screen shows it
  await expect.poll(() => queueTexts(zh)).toEqual([Q1, Q2]);
  await expect.poll(() => queueTexts(en)).toEqual([Q1, Q2]);
  await expect(en.locator('#mine .q', { hasText: Q3 })).toContainText('Not accepted');
  await expect(en.locator('#mine .q', { hasText: Q3 })).toContainText('Contains personal information');
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText('Approved');
  await expect(zh.locator('#queue')).not.toContainText(Q3);
  await expect.poll(() => expert.locator('#queue .q .text').allTextContents()).toEqual([Q1, Q2]);

  // ---- votes change the order ----
  await zh.click('#tab-queue');
  await en.click('#tab-queue');
  await zh.locator('#queue .q', { hasText: Q2 }).locator('.vote').click();
  await en.locator('#queue .q', { hasText: Q2 }).locator('.vote').click();
  await expect.poll(() => queueTexts(zh)).toEqual([Q2, Q1]);
  await expect.poll(() => queueTexts(en)).toEqual([Q2, Q1]);
  await expect(en.locator('#queue .q', { hasText: Q2 }).locator('.vote .n')).toHaveText('2');
  await expect(en.locator('#queue .q', { hasText: Q2 }).locator('.vote')).toHaveAttribute('aria-pressed', 'true');
  await expect.poll(() => expert.locator('#queue .q .text').allTextContents()).toEqual([Q2, Q1]);
  // take a vote back, and give it again
  await zh.locator('#queue .q', { hasText: Q2 }).locator('.vote').click();
  await expect(en.locator('#queue .q', { hasText: Q2 }).locator('.vote .n')).toHaveText('1');
  await zh.locator('#queue .q', { hasText: Q2 }).locator('.vote').click();
  await expect(en.locator('#queue .q', { hasText: Q2 }).locator('.vote .n')).toHaveText('2');

  // ---- the expert answers ----
  await expert.locator('#queue .q', { hasText: Q2 }).getByRole('button', { name: 'Answer now' }).click();
  await expect(expert.locator('#now-text')).toHaveText(Q2);
  await expect(zh.locator('#now-text')).toHaveText(Q2);
  await expect(en.locator('#now-text')).toHaveText(Q2);
  await expect(zh.locator('#now .label')).toHaveText('正在回答');
  await expect(en.locator('#queue .q.answering')).toContainText(Q2);
  await shot(zh, 'patient-answering-zh');
  await shot(expert, 'expert-desktop');
  await expert.fill('#answer-text', ANSWER);
  await expert.click('#btn-answered');
  await expect(zh.locator('#now')).toBeHidden();
  await expect.poll(() => queueTexts(en)).toEqual([Q1]);
  await en.click('#tab-answered');
  await expect(en.locator('#answered .q', { hasText: Q2 })).toContainText(ANSWER);
  await en.click('#tab-mine');
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText('Answered');
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText(ANSWER);
  await expect(mod.locator('#stat-answered')).toHaveText('1');
  await expect(expert.locator('#stat-answered')).toHaveText('1');
  await shot(en, 'patient-mine-en');

  // ---- a reload keeps the identity and "my questions" ----
  await en.reload();
  await expect(en.locator('#live')).toBeVisible();
  await expect(en.locator('#join')).toBeHidden();
  perf.reloadJoined = await paintTimes(en);
  await en.click('#tab-mine');
  await expect(en.locator('#mine .q')).toHaveCount(2);
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText(ANSWER);
  await expect(en.locator('#mine .q', { hasText: Q3 })).toContainText('Contains personal information');
  await expect(en.locator('#queue .q', { hasText: Q1 })).toHaveCount(1);
  if (video) await expectMovingVideo(en, '#video');

  // ---- the language switch ----
  await en.click('#lang');
  await expect(en.locator('#tab-mine')).toContainText('我的提问');
  await expect(en.locator('#mine .q', { hasText: Q2 })).toContainText('已回答');
  await en.click('#lang');
  await expect(en.locator('#tab-mine')).toContainText('My questions');

  // ---- phone-size screenshots of every page ----
  await zh.click('#tab-queue');
  await shot(zh, 'patient-zh');
  await en.click('#tab-queue');
  await shot(en, 'patient-en');
  await expert.setViewportSize(PHONE.viewport);
  await shot(expert, 'expert-phone');
  await mod.setViewportSize(PHONE.viewport);
  await shot(mod, 'moderator-phone');
  const list = await hostCtx.newPage();
  await list.goto(`${server.url}/`);
  await expect(list.locator('.session-card', { hasText: 'Breast cancer after 60' })).toContainText('Live now');
  await shot(list, 'index-phone');
  for (const p of [host, expert, mod, zh, en, list]) {
    await expectNoHorizontalScroll(p);
    await expectBigTapTargets(p);
  }

  // ---- ending ----
  expert.once('dialog', (d) => d.accept());
  await expert.click('#btn-end');
  await expect(zh.locator('#ask-closed')).toBeVisible();
  await expect(zh.locator('#v-title')).toHaveText('这场直播已结束');
  await shot(zh, 'patient-ended-zh');

  await mkdir(join(ROOT, 'artifacts'), { recursive: true });
  await writeFile(join(ROOT, 'artifacts', 'paint-timing.json'), JSON.stringify(perf, null, 2));
  console.log('paint timing (ms):', JSON.stringify(perf));
  expect(errors).toEqual([]);
  for (const ctx of [hostCtx, expertCtx, modCtx, zhCtx, enCtx]) await ctx.close();
});

async function paintTimes(page) {
  await page.waitForFunction(() => performance.getEntriesByType('paint').length >= 2);
  return page.evaluate(() => {
    const out = {};
    for (const e of performance.getEntriesByType('paint')) out[e.name] = Math.round(e.startTime);
    const nav = performance.getEntriesByType('navigation')[0];
    if (nav) out.domContentLoaded = Math.round(nav.domContentLoadedEventEnd);
    return out;
  });
}

/** Every visible button, link and field is at least 44 px high (wide, for buttons). */
async function expectBigTapTargets(page) {
  const small = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('button, a, input, select, textarea, summary')) {
      // a radio or checkbox is tapped through its label
      const r = (el.closest('label') || el).getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || el.closest('.print-root')) continue;
      if (r.height < 44 || (el.tagName !== 'A' && r.width < 44)) out.push(`${el.tagName}#${el.id}.${el.className} ${Math.round(r.width)}x${Math.round(r.height)} "${(el.textContent || el.value || '').trim().slice(0, 20)}"`);
    }
    return out;
  });
  expect(small, `${page.url()} has small tap targets`).toEqual([]);
}

async function expectNoHorizontalScroll(page) {
  const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  expect(scroll, `${page.url()} scrolls sideways`).toBeLessThanOrEqual(client);
}

test('the patient page on a slow mobile link: bytes and first paint', async ({ browser, server }) => {
  // Through wire.mjs, not the fixture's context.route: a routed answer skips the throttle, and its
  // request has no Accept-Encoding yet, so the route sent every file uncompressed (≈190–210 KB
  // counted where gzip makes ≈55 KB). The front serves this checkout's web/ over a real socket,
  // gzipped as the server does: what is counted is what goes on the wire.
  const front = await startWireProxy(server.url);
  const ctx = await browser.newContext({ ...PHONE, locale: 'zh-CN' });
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  // roughly a weak 3G link: 300 ms round trips, 400 kbit/s down, 150 kbit/s up
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 300, downloadThroughput: (400 * 1024) / 8, uploadThroughput: (150 * 1024) / 8,
  });
  await page.goto(`${front.url}/s/${server.session_id}`);
  await expect(page.locator('#join-btn')).toHaveText('进入直播');
  const result = await page.evaluate(() => {
    const paint = {};
    for (const e of performance.getEntriesByType('paint')) paint[e.name] = Math.round(e.startTime);
    let jsCss = 0;
    let all = 0;
    for (const r of performance.getEntriesByType('resource')) {
      all += r.transferSize;
      if (/\.(js|css)$/.test(new URL(r.name).pathname)) jsCss += r.transferSize;
    }
    const nav = performance.getEntriesByType('navigation')[0];
    return { ...paint, jsCssTransferBytes: jsCss, totalTransferBytes: all + (nav ? nav.transferSize : 0) };
  });
  await mkdir(join(ROOT, 'artifacts'), { recursive: true });
  await writeFile(join(ROOT, 'artifacts', 'paint-timing-slow3g.json'), JSON.stringify(result, null, 2));
  console.log('slow link (300 ms RTT, 400 kbit/s):', JSON.stringify(result));
  expect(result.jsCssTransferBytes).toBeLessThan(100 * 1024);
  // The paint time is recorded (artifacts/paint-timing-slow3g.json), not asserted: this machine
  // is shared and noisy, and speed belongs in measurements, not in pass/fail.
  expect(result['first-contentful-paint']).toBeGreaterThan(0);
  await ctx.close();
  await front.stop();
});
