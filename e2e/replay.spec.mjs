// The replay of an ended session and HLS on the patient page (issue 12).
//
// - "a real broadcast …" runs against the server's recorder: the expert publishes from the fake
//   camera for ≥ 12 s, a question is approved and marked answering at a known moment, then
//   answered; the host ends the session; the patient link opens the replay and a chapter tap
//   lands within 2 s of the answer. While live, a late patient watches from the start.
//   Skipped (with a note) when the server has no recording API or no relay.
// - the other tests stand the recording API in with `page.route` and ffmpeg-made media, so the
//   page's own behaviour (chapters, highlight, empty state, the MSE HLS player, the fallback when
//   WebRTC fails) is checked whatever the server has.
// Screenshots go to artifacts/screenshots/ (replay-*.png, hls-*.png).
import { mkdir } from 'node:fs/promises';
import { statSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, expect, createSession } from './server.mjs';
import { PHONE, makeMp4, makeHls, fulfillFile, hasMediaApi, setState, tooSmallOrCut, smallTargets } from './media.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = join(ROOT, 'artifacts', 'screenshots');
const DESKTOP = { viewport: { width: 1280, height: 800 } };

async function shot(page, name, { fullPage = false } = {}) {
  await mkdir(SHOTS, { recursive: true });
  await page.evaluate(() => { for (const el of document.querySelectorAll('.toast')) el.remove(); });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

function watchErrors(page, label, errors) {
  page.on('pageerror', (e) => errors.push(`${label}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`${label}: ${m.text()}`);
  });
}

const currentTime = (page, sel = '#r-video') => page.$eval(sel, (v) => v.currentTime);
const paused = (page, sel = '#r-video') => page.$eval(sel, (v) => v.paused);
/** What a failed expectation about playback prints. */
const videoState = (page, sel = '#r-video') => page.$eval(sel, (v) => ({
  currentTime: v.currentTime, duration: v.duration, paused: v.paused, ended: v.ended, readyState: v.readyState,
  networkState: v.networkState, error: v.error && `${v.error.code} ${v.error.message}`,
  buffered: Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
  seekable: Array.from({ length: v.seekable.length }, (_, i) => [v.seekable.start(i), v.seekable.end(i)]),
}));

/** The video moves: currentTime advances by more than half a second. */
async function expectAdvancing(page, sel) {
  const t0 = await currentTime(page, sel);
  await expect.poll(() => currentTime(page, sel), { timeout: 15_000 }).toBeGreaterThan(t0 + 0.5);
}

async function relayMounted(url, sid) {
  const res = await fetch(`${url}/api/sessions/${sid}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  return res.status !== 404 && res.status !== 405;
}

// ---------------------------------------------------------------------------------------------
// against the server's recorder

test('a real broadcast: the replay plays and a chapter tap lands within 2 s of the answer; watch from the start while live', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Lung nodules: what the size means', expert_name: 'Dr. Wang Li' });
  test.skip(!(await hasMediaApi(server.url)), 'the server has no recording/library API yet');
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const errors = [];
  const QUESTION = 'How often should a 6 mm nodule be checked?';

  // ---- the expert goes live from the fake camera ----
  const expertCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US', permissions: ['camera', 'microphone'] });
  const expert = await expertCtx.newPage();
  watchErrors(expert, 'expert', errors);
  await expert.goto(links.expert);
  await expect(expert.locator('#console')).toBeVisible();
  await expert.click('#btn-live');
  await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });
  const publishedAt = Date.now();

  // ---- a patient asks; the moderator approves ----
  const askCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const asker = await askCtx.newPage();
  watchErrors(asker, 'asker', errors);
  await asker.goto(links.patient);
  await asker.click('#join-btn');
  await expect(asker.locator('#conn')).toHaveAttribute('data-state', 'online');
  await asker.fill('#ask-text', QUESTION);
  if (await asker.locator('#consent').isVisible()) await asker.check('#consent-box');
  await asker.click('#ask-btn');
  const modCtx = await browser.newContext({ ...DESKTOP, locale: 'en-US' });
  const mod = await modCtx.newPage();
  await mod.goto(links.moderator);
  await mod.locator('#list .q', { hasText: QUESTION }).getByRole('button', { name: 'Approve' }).click();
  await expect.poll(() => expert.locator('#queue .q .text').allTextContents()).toEqual([QUESTION]);

  // ---- at a known moment (≥ 5 s into the broadcast) the expert answers it ----
  const wait = publishedAt + 5000 - Date.now();
  if (wait > 0) await expert.waitForTimeout(wait);
  await expert.locator('#queue .q', { hasText: QUESTION }).getByRole('button', { name: 'Answer now' }).click();
  const answeringClicked = Date.now();
  await expect(expert.locator('#now-text')).toHaveText(QUESTION);

  // ---- a late patient watches from the start while the broadcast runs ----
  const lateCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const late = await lateCtx.newPage();
  watchErrors(late, 'late', errors);
  await late.goto(links.patient);
  await late.click('#join-btn');
  let live = null;
  await expect.poll(async () => {
    live = await (await fetch(`${server.url}/api/sessions/${session.id}/recording`)).json().catch(() => null);
    return live && live.state;
  }, { timeout: 20_000 }).toBe('recording');
  if (live.hls_all) {
    await expect(late.locator('#btn-from-start')).toBeVisible({ timeout: 30_000 });
    await late.click('#btn-from-start');
    await expect(late.locator('#btn-back-live')).toBeVisible();
    await expectAdvancing(late, '#video');
    // from the start: the position is near the beginning, not at the live edge
    expect(await currentTime(late, '#video')).toBeLessThan((Date.now() - publishedAt) / 1000 - 2);
    await shot(late, 'hls-from-start-en');
    await late.click('#btn-back-live');
    await expect(late.locator('#btn-from-start')).toBeVisible();
  } else {
    test.info().annotations.push({ type: 'hls', description: `no hls_all (container ${live.container}): watch from the start not checked` });
  }

  // ---- answered; at least 12 s of video; the host ends the session ----
  await expert.waitForTimeout(Math.max(0, answeringClicked + 5000 - Date.now()));
  await expert.fill('#answer-text', 'Every 6 to 12 months at first.');
  await expert.click('#btn-answered');
  await expect(expert.locator('#stat-answered')).toHaveText('1');
  await expert.waitForTimeout(Math.max(0, publishedAt + 14_000 - Date.now()));
  await setState(server, session.id, 'ended');
  const sentSeconds = (Date.now() - publishedAt) / 1000;

  // ---- the recording closes; its chapter is where the expert pressed "Answer now" ----
  let rec = null;
  await expect.poll(async () => {
    const res = await fetch(`${server.url}/api/sessions/${session.id}/recording`);
    rec = res.status === 200 ? await res.json() : null;
    return rec && rec.state;
  }, { timeout: 30_000 }).toBe('ended');
  expect(rec.duration_ms).toBeGreaterThan(10_000);
  expect(rec.chapters).toHaveLength(1);
  const chapter = rec.chapters[0];
  expect(chapter.text).toBe(QUESTION);
  const expectedMs = Date.parse(chapter.answering_at) - Date.parse(rec.started_at);
  expect(Math.abs(chapter.at_ms - expectedMs)).toBeLessThan(2000);
  expect(chapter.at_ms).toBeGreaterThan(2000);
  expect(chapter.at_ms).toBeLessThan(rec.duration_ms);

  // ---- ffprobe reads the browser's recording: one video and one audio stream, its length ----
  // The expert's page sends three layers and the recorder writes the best one sending; when the
  // browser drops its top layer (its bandwidth estimate or its CPU on this busy machine), an
  // H.264 recording moves to a smaller one in a new part (a VP8 part carries the change). So
  // there may be more than one part: each is read, and together they hold the broadcast.
  const probeOf = (url, entries) => JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries', entries,
    '-of', 'json', `${server.url}${url}`]).toString());
  const probed = rec.parts.map((part) => ({ part, ...probeOf(part.download, 'stream=codec_type,codec_name,start_time:format=duration,start_time') }));
  console.log(`recording: parts ${JSON.stringify(probed.map(({ part, streams, format }) => ({ index: part.index, start_ms: part.start_ms, duration_ms: part.duration_ms, streams, format })))}`);
  for (const { part, streams } of probed) {
    const kinds = streams.map((st) => `${st.codec_type}:${st.codec_name}`);
    expect(kinds, `part ${part.index}`).toEqual(part.container === 'mp4' ? ['video:h264', 'audio:opus'] : ['video:vp8', 'audio:opus']);
  }
  // Each file keeps the recording's timeline and declares where it ends: the last one ends
  // where the broadcast did.
  const declared = Number(probed[probed.length - 1].format.duration);
  // The files declare the length their segments cover (the VOD playlist lists the same ones).
  if (rec.hls_all) {
    const playlist = await (await fetch(`${server.url}${rec.hls_all}`)).text();
    const listed = [...playlist.matchAll(/#EXTINF:([0-9.]+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect.soft(Math.abs(declared - listed), `ffprobe declares ${declared} s, the playlist lists ${listed} s`).toBeLessThan(0.5 * rec.parts.length);
  }
  // The whole broadcast is there (issue 12: within 10 % of what was sent), from its first
  // second: the microphone's packets before the camera's first keyframe are kept.
  expect.soft(Math.abs(declared - sentSeconds), `ffprobe declares ${declared} s of ~${sentSeconds.toFixed(1)} s published`).toBeLessThan(sentSeconds * 0.1);
  const first = probed[0].streams;
  const audioStart = Number(first.find((st) => st.codec_type === 'audio').start_time);
  expect(audioStart, 'the sound starts with the broadcast').toBeLessThan(0.5);
  // The top layer is waited for 1.5 s at most (then the best one sending is taken), so the
  // picture starts with the sound, not when the browser's top layer gets going.
  const videoStart = Number(first.find((st) => st.codec_type === 'video').start_time);
  expect(videoStart, 'the picture starts with the broadcast').toBeLessThan(2);
  let frames = 0;
  for (const { part } of probed) {
    const rows = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'frame=pts_time,width',
      '-of', 'csv=p=0', `${server.url}${part.download}`]).toString().trim().split('\n').map((l) => l.split(',').map(Number));
    const runs = rows.reduce((acc, [, w]) => (acc.length && acc[acc.length - 1][0] === w ? acc[acc.length - 1][1]++ : acc.push([w, 1]), acc), []);
    const gaps = rows.slice(1).map(([t], i) => t - rows[i][0]);
    console.log(`recording: part ${part.index} video ${rows[0][0]}–${rows[rows.length - 1][0]} s, longest gap ${Math.max(...gaps).toFixed(3)} s; frame widths in order: ${runs.map(([w, n]) => `${w}×${n}`).join(', ')}`);
    frames += rows.length;
  }
  // at least 2 a second: the fake camera sends 30, but a starved encoder on this busy machine
  // far fewer (11 a second measured while a build ran beside the tests)
  expect(frames, 'the files\' frames decode').toBeGreaterThan(sentSeconds * 2);
  test.info().annotations.push({ type: 'recording', description: `${rec.container}: ${rec.parts.length} part(s), ffprobe ${declared} s, manifest ${rec.duration_ms} ms, ~${sentSeconds.toFixed(1)} s published, picture from ${videoStart} s` });
  console.log(`recording: ${rec.parts.length} part(s); ffprobe declares ${declared} s; manifest end ${rec.duration_ms} ms; published ~${sentSeconds.toFixed(1)} s; picture from ${videoStart} s`);

  // the patient who asked, still on the page, is offered the replay
  await expect(asker.locator('#btn-replay')).toBeVisible({ timeout: 20_000 });
  await asker.click('#btn-replay');
  await expect(asker.locator('#replay')).toBeVisible();

  // ---- a patient from the poster opens the link: the replay, in both languages ----
  for (const locale of ['en-US', 'zh-CN']) {
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    watchErrors(page, `replay-${locale}`, errors);
    await page.goto(links.patient);
    await expect(page.locator('#replay')).toBeVisible();
    await expect(page.locator('#r-chapters .chapter')).toHaveCount(1);
    await expect(page.locator('#r-chapters .chapter')).toContainText(QUESTION);
    await expect.poll(() => page.$eval('#r-video', (v) => v.readyState)).toBeGreaterThanOrEqual(1);
    await page.locator('#r-chapters .chapter').first().tap();
    await expect.poll(async () => Math.abs(await currentTime(page) - chapter.at_ms / 1000), { timeout: 15_000 }).toBeLessThan(2);
    expect(await paused(page), JSON.stringify(await videoState(page))).toBe(false);
    await expectAdvancing(page, '#r-video');
    await expect(page.locator('#r-chapters li').first()).toHaveClass(/current/);
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    await shot(page, `replay-real-${locale.slice(0, 2)}`);
    await ctx.close();
  }
  expect(errors).toEqual([]);
  for (const ctx of [expertCtx, askCtx, modCtx, lateCtx]) await ctx.close();
});

/** A browser that cannot send H.264 (as some Android phones): the expert page offers VP8. */
const NO_H264 = () => {
  for (const side of [globalThis.RTCRtpSender, globalThis.RTCRtpReceiver]) {
    if (!side || !side.getCapabilities) continue;
    const original = side.getCapabilities.bind(side);
    side.getCapabilities = (kind) => {
      const caps = original(kind);
      if (kind !== 'video' || !caps) return caps;
      return { ...caps, codecs: caps.codecs.filter((c) => !/h264/i.test(c.mimeType)) };
    };
  }
};

test('a real broadcast in two parts (H.264, then a VP8 browser): the replay plays on into the second part, a chapter tap opens it', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Two devices', expert_name: 'Dr. Zhao', moderation: 'post' });
  test.skip(!(await hasMediaApi(server.url)), 'the server has no recording/library API yet');
  test.skip(!(await relayMounted(server.url, session.id)), 'the server does not mount the relay');
  const errors = [];
  const QUESTION = 'Is a colonoscopy needed after a positive FIT?';

  const goLive = async (initScript) => {
    const ctx = await browser.newContext({ ...DESKTOP, locale: 'en-US', permissions: ['camera', 'microphone'] });
    if (initScript) await ctx.addInitScript(initScript);
    const page = await ctx.newPage();
    watchErrors(page, 'expert', errors);
    await page.goto(links.expert);
    await page.click('#btn-live');
    await expect(page.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });
    return { ctx, page };
  };
  const wantParts = async (n) => {
    let rec = null;
    await expect.poll(async () => {
      const res = await fetch(`${server.url}/api/sessions/${session.id}/recording`);
      rec = res.status === 200 ? await res.json() : null;
      return rec ? rec.parts.length : 0;
    }, { timeout: 30_000 }).toBe(n);
    return rec;
  };

  // a patient asks before the broadcast; the H.264 browser broadcasts first
  const askCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const asker = await askCtx.newPage();
  await asker.goto(links.patient);
  await asker.click('#join-btn');
  await asker.fill('#ask-text', QUESTION);
  if (await asker.locator('#consent').isVisible()) await asker.check('#consent-box');
  await asker.click('#ask-btn');
  await askCtx.close();
  // One layer each: this is about a change of codec between publishers. A simulcast H.264
  // recording may add parts of its own when the browser drops its top layer (see above).
  const first = await goLive(() => localStorage.setItem('oncolive.simulcast', 'false'));
  await wantParts(1);
  await first.page.waitForTimeout(6000);
  // then the expert moves to a browser without H.264: it replaces the first one
  const second = await goLive(NO_H264);
  await wantParts(2);
  await second.page.waitForTimeout(2000);
  await second.page.locator('#queue .q', { hasText: QUESTION }).getByRole('button', { name: 'Answer now' }).click();
  await expect(second.page.locator('#now-text')).toHaveText(QUESTION);
  await second.page.waitForTimeout(5000);
  await setState(server, session.id, 'ended');
  let rec = null;
  await expect.poll(async () => {
    const res = await fetch(`${server.url}/api/sessions/${session.id}/recording`);
    rec = res.status === 200 ? await res.json() : null;
    return rec && rec.state;
  }, { timeout: 30_000 }).toBe('ended');
  expect(rec.parts.map((p) => p.container)).toEqual(['mp4', 'webm']);
  const chapter = rec.chapters[0];
  expect(chapter.part).toBe(rec.parts[1].index);
  for (const part of rec.parts) {
    const probed = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name:format=duration,start_time',
      '-of', 'json', `${server.url}${part.download}`]).toString());
    expect(probed.streams.map((st) => st.codec_name)).toEqual(part.container === 'mp4' ? ['h264', 'opus'] : ['vp8', 'opus']);
    expect(Math.abs(Number(probed.format.start_time) - part.start_ms / 1000)).toBeLessThan(0.5);
  }

  for (const locale of ['en-US', 'zh-CN']) {
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    watchErrors(page, `parts-${locale}`, errors);
    await page.goto(links.patient);
    await expect(page.locator('#replay')).toBeVisible();
    await expect(page.locator('#r-parts .part')).toHaveCount(2);
    await expect(page.locator('#r-parts .part').first()).toHaveAttribute('aria-current', 'true');
    // the chapter is in the second part: the tap loads it and lands within 2 s
    await page.locator('#r-chapters .chapter').first().tap();
    await expect(page.locator('#r-parts .part').nth(1)).toHaveAttribute('aria-current', 'true');
    await expect.poll(async () => Math.abs(await currentTime(page) - chapter.at_ms / 1000), { timeout: 15_000 }).toBeLessThan(2);
    await expectAdvancing(page, '#r-video');
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    await shot(page, `replay-parts-${locale.slice(0, 2)}`);
    if (locale === 'en-US') {
      // the first part, played to its end, goes on into the second
      await page.locator('#r-parts .part').first().tap();
      const firstEnd = (rec.parts[0].start_ms + rec.parts[0].duration_ms) / 1000;
      await expect.poll(() => page.$eval('#r-video', (v) => v.readyState)).toBeGreaterThanOrEqual(1);
      await page.$eval('#r-video', (v, t) => { v.currentTime = t; }, firstEnd - 1);
      await expect(page.locator('#r-parts .part').nth(1)).toHaveAttribute('aria-current', 'true', { timeout: 15_000 });
      await expect.poll(() => currentTime(page), { timeout: 15_000 }).toBeGreaterThan(rec.parts[1].start_ms / 1000);
      await expectAdvancing(page, '#r-video');
    }
    await ctx.close();
  }
  expect(errors).toEqual([]);
  await first.ctx.close();
  await second.ctx.close();
});

// ---------------------------------------------------------------------------------------------
// the page's behaviour, with the recording API stood in

const CHAPTERS = [
  { question: 11, text: '肺结节多大需要手术？', at_ms: 12_000 },
  { question: 12, text: 'Is a low-dose CT scan every year safe for someone who smoked for 30 years?', at_ms: 31_000 },
  { question: 13, text: 'After surgery, when can I go back to swimming?', at_ms: 47_000 },
];

function recordingFor(sid, file, extra = {}) {
  const started = new Date(Date.now() - 3600_000);
  return {
    session: sid, state: 'ended', started_at: started.toISOString(), ended_at: new Date(started.getTime() + 60_000).toISOString(),
    duration_ms: 60_000, bytes: file ? statSync(file).size : 0, container: 'mp4', codecs: 'avc1.42e01f,mp4a.40.2',
    mime: 'video/mp4; codecs="avc1.42e01f,mp4a.40.2"', hls: null, hls_all: null,
    download: `/api/sessions/${sid}/recording.mp4`,
    chapters: CHAPTERS.map((c) => ({ ...c, answering_at: new Date(started.getTime() + c.at_ms).toISOString() })),
    ...extra,
  };
}

const LIBRARY = [
  { id: 'v-after', title: 'After lung surgery: breathing exercises', topic: 'Rehabilitation at home', expert: 'Dr. Wang Li', language: 'en', duration_ms: 8000, width: 320, height: 240, codecs: 'avc1.64000d,mp4a.40.2', bytes: 1, created_at: '2026-11-30T10:00:00Z', url: '/api/videos/v-after/video.mp4' },
  { id: 'v-before', title: '肺结节是什么', topic: '三分钟看懂CT报告', expert: '王丽 医生', language: 'zh', duration_ms: 8000, width: 320, height: 240, codecs: 'avc1.64000d,mp4a.40.2', bytes: 1, created_at: '2026-11-30T10:00:00Z', url: '/api/videos/v-before/video.mp4' },
];

test('replay (recording stood in): chapters seek and light up, an attached video plays after; both languages at 360×640', async ({ browser, server }) => {
  const { session } = await createSession(server, { title: 'Lung nodules: what the size means', expert_name: 'Dr. Wang Li' });
  await setState(server, session.id, 'live');
  const ended = (await setState(server, session.id, 'ended')).session;
  const mp4 = makeMp4('replay.mp4', { seconds: 60, size: '640x360' });
  const lib = makeMp4('library.mp4', { seconds: 8 });
  const rec = recordingFor(session.id, mp4);
  const errors = [];
  for (const locale of ['en-US', 'zh-CN']) {
    const lang = locale.slice(0, 2);
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    watchErrors(page, `replay-${lang}`, errors);
    await page.route(`**/api/sessions/${session.id}`, (route) => route.fulfill({ json: { session: { ...ended, videos: [{ video: 'v-after', when: 'after' }, { video: 'v-before', when: 'before' }] }, viewers: 0, video: 'waiting' } }));
    await page.route(`**/api/sessions/${session.id}/recording`, (route) => route.fulfill({ json: rec }));
    await page.route(`**/api/sessions/${session.id}/recording.mp4`, (route) => fulfillFile(route, mp4, 'video/mp4'));
    await page.route('**/api/videos', (route) => route.fulfill({ json: LIBRARY }));
    await page.route('**/api/videos/*/video.mp4', (route) => fulfillFile(route, lib, 'video/mp4'));
    await page.goto(`${server.url}/s/${session.id}`);
    await expect(page.locator('#replay')).toBeVisible();
    await expect(page.locator('#r-chapters .chapter')).toHaveCount(3);
    await expect(page.locator('#r-chapters .chapter .at')).toHaveText(['0:12', '0:31', '0:47']);
    await expect(page.locator('#r-video')).toHaveAttribute('src', rec.download);
    expect(await page.$eval('#r-video', (v) => [v.controls, v.playsInline, v.preload])).toEqual([true, true, 'metadata']);
    await shot(page, `replay-${lang}`);
    await shot(page, `replay-${lang}-full`, { fullPage: true });

    // tap the second chapter: it seeks to 31 s, plays, and is the highlighted one
    await page.locator('#r-chapters .chapter').nth(1).tap();
    await expect.poll(async () => Math.abs(await currentTime(page) - 31), { timeout: 15_000 }).toBeLessThan(2);
    await expectAdvancing(page, '#r-video');
    expect(await paused(page)).toBe(false);
    await expect(page.locator('#r-chapters li').nth(1)).toHaveClass(/current/);
    await expect(page.locator('#r-chapters li.current')).toHaveCount(1);
    await expect(page.locator('#r-chapters li').nth(1).locator('.chapter')).toHaveAttribute('aria-current', 'true');
    // playing on past 47 s moves the highlight by itself
    await page.$eval('#r-video', (v) => { v.currentTime = 46.5; });
    await expect(page.locator('#r-chapters li').nth(2)).toHaveClass(/current/, { timeout: 10_000 });
    await page.$eval('#r-video', (v) => v.pause());
    await shot(page, `replay-chapter-${lang}`);

    // "watch after": the attached video (not the "before" one) plays in place
    await expect(page.locator('#r-videos h2')).toHaveText(lang === 'zh' ? '直播后推荐观看' : 'Watch after the session');
    await expect(page.locator('#r-videos .lib-card')).toHaveCount(1);
    await page.locator('#r-videos .lib-open').tap();
    await expectAdvancing(page, '#r-videos video');
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    expect(await smallTargets(page, '#replay')).toEqual([]);
    await shot(page, `replay-after-video-${lang}`, { fullPage: true });
    await ctx.close();
  }
  expect(errors).toEqual([]);
});

test('replay: a session without a recording says so', async ({ browser, server }) => {
  const { session } = await createSession(server, { title: 'Not recorded' });
  await setState(server, session.id, 'ended');
  for (const [locale, text] of [['en-US', 'There is no replay'], ['zh-CN', '没有回放']]) {
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    await page.route(`**/api/sessions/${session.id}/recording`, (route) => route.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'no recording' } } }));
    await page.goto(`${server.url}/s/${session.id}`);
    await expect(page.locator('#replay')).toBeVisible();
    await expect(page.locator('#r-empty')).toContainText(text);
    await expect(page.locator('#r-video')).toBeHidden();
    await expect(page.locator('#r-chapters-box')).toBeHidden();
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    await shot(page, `replay-empty-${locale.slice(0, 2)}`);
    await ctx.close();
  }
});

/** Serve an ffmpeg-made HLS rendition under the session's hls/ path; `live` drops ENDLIST. */
async function routeHls(page, sid, dir, { live = false } = {}) {
  await page.route(new RegExp(`/api/sessions/${sid}/hls/([\\w.]+)$`), async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop();
    if (name.endsWith('.m3u8')) {
      let text = readFileSync(join(dir, 'all.m3u8'), 'utf8');
      if (live) text = text.replace('#EXT-X-PLAYLIST-TYPE:VOD\n', '#EXT-X-PLAYLIST-TYPE:EVENT\n').replace('#EXT-X-ENDLIST\n', '');
      return route.fulfill({ status: 200, headers: { 'Content-Type': 'application/vnd.apple.mpegurl', 'Cache-Control': 'no-cache' }, body: text });
    }
    return fulfillFile(route, join(dir, name), 'video/mp4');
  });
}

function liveRecording(sid) {
  return {
    session: sid, state: 'recording', started_at: new Date(Date.now() - 30_000).toISOString(), ended_at: null,
    duration_ms: 24_000, bytes: 1, container: 'mp4', codecs: 'avc1.42e01f,opus', mime: 'video/mp4; codecs="avc1.42e01f,opus"',
    hls: `/api/sessions/${sid}/hls/index.m3u8`, hls_all: `/api/sessions/${sid}/hls/all.m3u8`,
    download: `/api/sessions/${sid}/recording.mp4`, chapters: [],
  };
}

test('live: watch from the start over our MSE HLS player, seek, back to live (recording stood in)', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Cervical screening: HPV tests' });
  await setState(server, session.id, 'live');
  const dir = makeHls('hls-start', { seconds: 24 });
  for (const locale of ['en-US', 'zh-CN']) {
    const lang = locale.slice(0, 2);
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    const errors = [];
    watchErrors(page, 'late', errors);
    await page.route(`**/api/sessions/${session.id}/recording`, (route) => route.fulfill({ json: liveRecording(session.id) }));
    await routeHls(page, session.id, dir, { live: true });
    await page.goto(links.patient);
    await page.click('#join-btn');
    await expect(page.locator('#btn-from-start')).toBeVisible();
    await shot(page, `hls-live-offer-${lang}`);
    await page.locator('#btn-from-start').tap();
    await expect(page.locator('#btn-back-live')).toBeVisible();
    await expectAdvancing(page, '#video');
    expect(await currentTime(page, '#video')).toBeLessThan(6);
    expect(await page.$eval('#video', (v) => v.controls)).toBe(true);
    // our own loader (MSE), not the browser's HLS: the picture comes from a blob: URL
    expect(await page.$eval('#video', (v) => v.src.startsWith('blob:'))).toBe(true);
    await expect(page.locator('#v-note')).toBeVisible();
    await expect(page.locator('#v-overlay')).toBeHidden();
    await page.$eval('#video', (v) => { v.currentTime = 17; });
    await expect.poll(() => currentTime(page, '#video'), { timeout: 10_000 }).toBeGreaterThan(17);
    await expectAdvancing(page, '#video');
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    await shot(page, `hls-from-start-${lang}`);
    await page.locator('#btn-back-live').tap();
    await expect(page.locator('#btn-from-start')).toBeVisible();
    expect(await page.$eval('#video', (v) => v.controls)).toBe(false);
    expect(errors).toEqual([]);
    await ctx.close();
  }
});

test('live: when WebRTC cannot connect, the live HLS plays and the page says it is a few seconds behind', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Fallback test' });
  await setState(server, session.id, 'live');
  const dir = makeHls('hls-fallback', { seconds: 24 });
  for (const [locale, text] of [['en-US', 'a few seconds behind'], ['zh-CN', '比直播慢几秒']]) {
    const ctx = await browser.newContext({ ...PHONE, locale });
    const page = await ctx.newPage();
    await page.route(`**/api/sessions/${session.id}/recording`, (route) => route.fulfill({ json: liveRecording(session.id) }));
    await routeHls(page, session.id, dir, { live: true });
    // the relay refuses this browser's WebRTC (as a firewall or an unsupported offer would)
    await page.route(/\/whep(\/.*)?$/, (route) => (route.request().method() === 'OPTIONS'
      ? route.fulfill({ status: 204 })
      : route.fulfill({ status: 400, json: { error: { code: 'unsupported_codec', message: 'no' } } })));
    await page.goto(links.patient);
    await page.click('#join-btn');
    await expect(page.locator('#v-note')).toContainText(text, { timeout: 20_000 });
    await expectAdvancing(page, '#video');
    await expect(page.locator('#v-overlay')).toBeHidden();
    await expect(page.locator('#badge-live')).toBeVisible();
    expect(await tooSmallOrCut(page, 14)).toEqual([]);
    await shot(page, `hls-fallback-${locale.slice(0, 2)}`);
    await ctx.close();
  }
});
