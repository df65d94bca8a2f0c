// The popular-science library (issue 12): the host uploads with tus, an upload interrupted
// half-way resumes (by itself after a dropped PATCH, and after a page reload with the same file
// chosen again), the video is listed on the session-list page and plays there, an invalid file
// is refused with its reason in the reader's language.
//
// - "real server …" runs against the server's library API (skipped with a note when it has none).
// - "stood-in tus server …" plays the server with `page.route` (an in-memory tus server in this
//   process), so the pages are checked whatever the server has.
// Screenshots go to artifacts/screenshots/ (library-*.png, host-upload-*.png).
import { mkdir } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, expect, createSession } from './server.mjs';
import { PHONE, makeMp4, makeFakeMp4, fulfillFile, hasMediaApi, tooSmallOrCut, smallTargets } from './media.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = join(ROOT, 'artifacts', 'screenshots');
const CHUNK = 16 * 1024;

async function shot(page, name, { fullPage = false } = {}) {
  await mkdir(SHOTS, { recursive: true });
  await page.evaluate(() => { for (const el of document.querySelectorAll('.toast')) el.remove(); });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/** A host page on a phone, signed in, with small upload chunks so a small file takes several PATCHes. */
async function hostPage(browser, server, locale = 'en-US') {
  const ctx = await browser.newContext({ ...PHONE, locale });
  await ctx.addInitScript((chunk) => { localStorage.setItem('oncolive.uploadChunk', JSON.stringify(chunk)); }, CHUNK);
  const page = await ctx.newPage();
  await page.goto(`${server.url}/host#token=${server.admin_token}`);
  await expect(page.locator('#library')).toBeVisible();
  return { ctx, page };
}

/** Count the tus requests a page makes; `abortPatch(n)` drops the n-th PATCH on the floor. */
async function watchTus(page, { abortPatch = () => false } = {}) {
  const seen = [];
  let patches = 0;
  await page.route(/\/api\/uploads(\/[^/?]+)?$/, async (route) => {
    const req = route.request();
    const entry = { method: req.method(), offset: req.headers()['upload-offset'] };
    seen.push(entry);
    if (req.method() === 'PATCH') {
      patches += 1;
      if (abortPatch(patches)) {
        entry.aborted = true;
        return route.abort('connectionreset');
      }
    }
    return route.fallback();
  });
  return seen;
}

async function fillUpload(page, file, { title, topic = 'Rehabilitation at home', expert = 'Dr. Wang Li', language = 'en' }) {
  await page.setInputFiles('#u-file', file);
  await page.fill('#u-title', title);
  await page.fill('#u-topic', topic);
  await page.fill('#u-expert', expert);
  await page.selectOption('#u-language', language);
}

async function expectPlays(page, selector) {
  await expect.poll(() => page.$eval(selector, (v) => v.videoWidth), { timeout: 20_000 }).toBeGreaterThan(0);
  const t0 = await page.$eval(selector, (v) => v.currentTime);
  await expect.poll(() => page.$eval(selector, (v) => v.currentTime), { timeout: 15_000 }).toBeGreaterThan(t0 + 0.5);
}

/** The upload went on from where it stopped: one creation, a HEAD after the break, no PATCH at 0 twice. */
function expectResumed(seen) {
  expect(seen.filter((r) => r.method === 'POST')).toHaveLength(1);
  const broken = seen.findIndex((r) => r.aborted);
  expect(broken).toBeGreaterThan(0);
  expect(seen.slice(broken).some((r) => r.method === 'HEAD')).toBe(true);
  const patchOffsets = seen.filter((r) => r.method === 'PATCH' && !r.aborted).map((r) => Number(r.offset));
  expect(patchOffsets.filter((o) => o === 0)).toHaveLength(1);
  expect(patchOffsets.at(-1)).toBeGreaterThan(0);
}

// ---------------------------------------------------------------------------------------------
// against the server's library

test('real server: an upload interrupted half-way resumes, is listed on the session page and plays; an invalid file is refused with its reason', async ({ browser, server }) => {
  test.skip(!(await hasMediaApi(server.url)), 'the server has no library API yet');
  const file = makeMp4('upload.mp4', { seconds: 4 });
  expect(statSync(file).size).toBeGreaterThan(2 * CHUNK);
  const { ctx, page } = await hostPage(browser, server);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  // the second PATCH dies: the page asks HEAD and sends the rest by itself
  const seen = await watchTus(page, { abortPatch: (n) => n === 2 });
  const title = `Breathing after lung surgery ${Date.now()}`;
  await fillUpload(page, file, { title });
  await page.click('#u-start');
  await expect(page.locator('#lib-admin .lib-card', { hasText: title })).toBeVisible({ timeout: 60_000 });
  expectResumed(seen);
  await shot(page, 'host-upload-done-en', { fullPage: true });

  // an invalid file: a text file named .mp4 is refused by the server, with the reason shown
  await page.unroute(/\/api\/uploads(\/[^/?]+)?$/);
  await page.setInputFiles('#u-file', makeFakeMp4());
  await page.fill('#u-title', 'Not a video');
  await page.click('#u-start');
  await expect(page.locator('#u-error')).toHaveText('This file is not an MP4 video. Please export it as MP4 (H.264).', { timeout: 30_000 });
  await shot(page, 'host-upload-refused-en');

  // the session-list page lists it and plays it in place
  const list = await ctx.newPage();
  await list.goto(`${server.url}/`);
  const card = list.locator('.lib-card', { hasText: title });
  await expect(card).toContainText('Dr. Wang Li');
  await expect(card).toContainText('0:04');
  await card.locator('.lib-open').tap();
  await expectPlays(list, '.lib-card.open video');
  expect(await tooSmallOrCut(list, 14)).toEqual([]);
  await shot(list, 'library-real-en');
  expect(errors).toEqual([]);
  await ctx.close();
});

test('real server: an upload paused and the page reloaded continues with the same file', async ({ browser, server }) => {
  test.skip(!(await hasMediaApi(server.url)), 'the server has no library API yet');
  const file = makeMp4('reload.mp4', { seconds: 4 });
  const { ctx, page } = await hostPage(browser, server);
  // every PATCH after the first fails: the host pauses and closes the page
  const seen = await watchTus(page, { abortPatch: (n) => n >= 2 });
  const title = `After chemotherapy: eating well ${Date.now()}`;
  await fillUpload(page, file, { title, language: 'zh' });
  await page.click('#u-start');
  await expect.poll(() => seen.filter((r) => r.aborted).length).toBeGreaterThan(0);
  await page.click('#u-pause');
  await expect(page.locator('#u-resume')).toBeVisible();
  await page.unroute(/\/api\/uploads(\/[^/?]+)?$/);
  const after = await watchTus(page);
  await page.reload();
  await expect(page.locator('#up-pending')).toContainText('reload.mp4');
  await expect(page.locator('#u-title')).toHaveValue(title);
  await page.setInputFiles('#u-file', file);
  await expect(page.locator('#u-start')).toHaveText('Continue the upload');
  await page.click('#u-start');
  await expect(page.locator('#lib-admin .lib-card', { hasText: title })).toBeVisible({ timeout: 60_000 });
  expect(after.filter((r) => r.method === 'POST')).toHaveLength(0);
  expect(after[0].method).toBe('HEAD');
  expect(Number(after.find((r) => r.method === 'PATCH').offset)).toBeGreaterThan(0);
  await ctx.close();
});

// ---------------------------------------------------------------------------------------------
// the pages' behaviour, with a stood-in tus server

/** An in-memory tus server behind `page.route` (one per test), with a validator like the server's. */
function standInLibrary(page, { mp4 }) {
  const uploads = new Map();
  const videos = [];
  let n = 0;
  const b64 = (s) => Buffer.from(s, 'base64').toString('utf8');
  const install = async (target) => {
    await target.route(/\/api\/uploads(\/[^/?]+)?$/, async (route) => {
      const req = route.request();
      const method = req.method();
      const tus = { 'Tus-Resumable': '1.0.0' };
      if (method === 'POST') {
        n += 1;
        const meta = Object.fromEntries((req.headers()['upload-metadata'] || '').split(',').filter(Boolean).map((p) => p.split(' ')).map(([k, v]) => [k, b64(v || '')]));
        uploads.set(`u${n}`, { length: Number(req.headers()['upload-length']), data: Buffer.alloc(0), meta });
        return route.fulfill({ status: 201, headers: { ...tus, Location: `/api/uploads/u${n}` } });
      }
      const id = new URL(req.url()).pathname.split('/').pop();
      const up = uploads.get(id);
      if (!up) return route.fulfill({ status: 404, headers: tus });
      if (method === 'HEAD') return route.fulfill({ status: 200, headers: { ...tus, 'Upload-Offset': String(up.data.length), 'Upload-Length': String(up.length) } });
      if (method === 'DELETE') { uploads.delete(id); return route.fulfill({ status: 204, headers: tus }); }
      if (Number(req.headers()['upload-offset']) !== up.data.length) return route.fulfill({ status: 409, headers: tus });
      up.data = Buffer.concat([up.data, req.postDataBuffer() || Buffer.alloc(0)]);
      if (up.data.length < up.length) return route.fulfill({ status: 204, headers: { ...tus, 'Upload-Offset': String(up.data.length) } });
      uploads.delete(id);
      // the real check parses the container; "ftyp" in the first box is enough to stand in
      if (up.data.subarray(4, 8).toString('latin1') !== 'ftyp') {
        return route.fulfill({ status: 422, headers: tus, json: { error: { code: 'not_mp4', message: 'not an MP4 file' } } });
      }
      const vid = `v${n}`;
      videos.unshift({ id: vid, title: up.meta.title, topic: up.meta.topic, expert: up.meta.expert, language: up.meta.language, duration_ms: 4000, width: 320, height: 240, codecs: 'avc1.64000d,mp4a.40.2', bytes: up.length, created_at: new Date().toISOString(), url: `/api/videos/${vid}/video.mp4` });
      return route.fulfill({ status: 204, headers: { ...tus, 'Upload-Offset': String(up.data.length), 'Oncolive-Video': vid } });
    });
    await target.route(/\/api\/videos(\/[^/]+)?$/, async (route) => {
      const req = route.request();
      if (req.method() === 'GET') return route.fulfill({ json: videos });
      const id = new URL(req.url()).pathname.split('/').pop();
      const i = videos.findIndex((v) => v.id === id);
      if (i < 0) return route.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'no' } } });
      if (req.method() === 'DELETE') { videos.splice(i, 1); return route.fulfill({ status: 204 }); }
      if (req.method() === 'PATCH') { Object.assign(videos[i], JSON.parse(req.postData())); return route.fulfill({ json: videos[i] }); }
      return route.fulfill({ status: 405 });
    });
    await target.route(/\/api\/videos\/[^/]+\/video\.mp4$/, (route) => fulfillFile(route, mp4, 'video/mp4'));
  };
  return { install, videos, uploads };
}

test('stood-in tus server: upload with a dropped PATCH, progress, refusal reasons in both languages, the list on the session page plays', async ({ browser, server }) => {
  const file = makeMp4('standin.mp4', { seconds: 4 });
  expect(statSync(file).size).toBeGreaterThan(2 * CHUNK);
  const { ctx, page } = await hostPage(browser, server);
  const lib = standInLibrary(page, { mp4: file });
  await lib.install(ctx);
  await page.reload();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const seen = await watchTus(page, { abortPatch: (n) => n === 2 });
  await expect(page.locator('#lib-admin')).toContainText('No videos yet.');
  await shot(page, 'host-library-empty-en');
  await page.locator('#library').scrollIntoViewIfNeeded();

  // a quick refusal before anything is sent: the name says it is not an MP4
  await page.setInputFiles('#u-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await expect(page.locator('#u-error')).toHaveText('This file is not an MP4 video. Please export it as MP4 (H.264).');

  await fillUpload(page, file, { title: 'After lung surgery: breathing exercises' });
  await page.click('#u-start');
  await expect(page.locator('#lib-admin .lib-card', { hasText: 'After lung surgery' })).toBeVisible({ timeout: 30_000 });
  expectResumed(seen);
  await expect(page.locator('#u-progress')).toBeHidden();
  await page.locator('#lib-admin').scrollIntoViewIfNeeded();
  await shot(page, 'host-upload-done-en');

  // the server's refusal: a text file named .mp4
  await page.setInputFiles('#u-file', makeFakeMp4());
  await page.fill('#u-title', 'Not a video');
  await page.click('#u-start');
  await expect(page.locator('#u-error')).toHaveText('This file is not an MP4 video. Please export it as MP4 (H.264).');
  await page.locator('#u-error').scrollIntoViewIfNeeded();
  await shot(page, 'host-upload-refused-en');
  expect(await tooSmallOrCut(page, 14, '#library')).toEqual([]);
  expect(await smallTargets(page, '#library')).toEqual([]);

  // edit the title
  await page.locator('#lib-admin [data-edit]').first().click();
  await page.locator('#lib-admin .lib-edit [data-field="title"]').fill('Breathing exercises after lung surgery');
  await page.locator('#lib-admin .lib-edit button[type="submit"]').click();
  await expect(page.locator('#lib-admin .lib-card .lib-title')).toHaveText(['Breathing exercises after lung surgery']);

  // zh: the same refusal in Chinese
  await page.click('#lang');
  await page.setInputFiles('#u-file', makeFakeMp4('fake2.mp4'));
  await page.fill('#u-title', '不是视频');
  await page.click('#u-start');
  await expect(page.locator('#u-error')).toHaveText('这个文件不是 MP4 视频。请导出为 MP4（H.264）格式。');
  await page.locator('#library').scrollIntoViewIfNeeded();
  await shot(page, 'host-upload-refused-zh');
  expect(await tooSmallOrCut(page, 14, '#library')).toEqual([]);

  // the session-list page: listed with its details, a language filter, plays in place
  lib.videos.push({ ...lib.videos[0], id: 'v-zh', title: '肺结节是什么', topic: '三分钟看懂CT报告', expert: '王丽 医生', language: 'zh', url: '/api/videos/v-zh/video.mp4' });
  for (const locale of ['en-US', 'zh-CN']) {
    const lang = locale.slice(0, 2);
    const listCtx = await browser.newContext({ ...PHONE, locale });
    await lib.install(listCtx);
    const list = await listCtx.newPage();
    list.on('pageerror', (e) => errors.push(e.message));
    await list.goto(`${server.url}/`);
    await expect(list.locator('#lib-list .lib-card')).toHaveCount(2);
    await list.locator('#library').scrollIntoViewIfNeeded();
    await shot(list, `library-${lang}`);
    await list.locator('#lib-filter button[data-lang="zh"]').tap();
    await expect(list.locator('#lib-list .lib-card')).toHaveCount(1);
    await expect(list.locator('#lib-list .lib-card')).toContainText('肺结节是什么');
    await list.locator('#lib-filter button[data-lang=""]').tap();
    const card = list.locator('.lib-card', { hasText: 'Breathing exercises' });
    await expect(card).toContainText('Dr. Wang Li · 0:04 · English');
    await card.locator('.lib-open').tap();
    await expectPlays(list, '.lib-card.open video');
    await expect(card.locator('.lib-open')).toHaveAttribute('aria-expanded', 'true');
    expect(await tooSmallOrCut(list, 14)).toEqual([]);
    expect(await smallTargets(list, '#library')).toEqual([]);
    await card.evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await list.evaluate(() => window.scrollBy(0, -60));
    await shot(list, `library-playing-${lang}`);
    await listCtx.close();
  }
  expect(errors).toEqual([]);
  await ctx.close();
});

test('stood-in tus server: a paused upload survives a reload; the same file continues, another file is told apart', async ({ browser, server }) => {
  const file = makeMp4('standin-reload.mp4', { seconds: 4 });
  const other = makeMp4('other.mp4', { seconds: 2 });
  const { ctx, page } = await hostPage(browser, server, 'zh-CN');
  const lib = standInLibrary(page, { mp4: file });
  await lib.install(ctx);
  const seen = await watchTus(page, { abortPatch: (n) => n >= 2 });
  await fillUpload(page, file, { title: '化疗后怎么吃', topic: '营养', expert: '李医生', language: 'zh' });
  await page.click('#u-start');
  await expect.poll(() => seen.filter((r) => r.aborted).length).toBeGreaterThan(0);
  await page.click('#u-pause');
  await expect(page.locator('#u-resume')).toBeVisible();
  await expect(page.locator('#u-pct')).toContainText('已暂停');
  await page.locator('#u-progress').scrollIntoViewIfNeeded();
  await shot(page, 'host-upload-paused-zh');
  await page.unroute(/\/api\/uploads(\/[^/?]+)?$/);

  const after = await watchTus(page);
  await page.reload();
  await expect(page.locator('#up-pending')).toContainText('standin-reload.mp4');
  await expect(page.locator('#u-title')).toHaveValue('化疗后怎么吃');
  await page.locator('#up-pending').scrollIntoViewIfNeeded();
  await shot(page, 'host-upload-pending-zh');
  await page.setInputFiles('#u-file', other);
  await expect(page.locator('#up-pending')).toContainText('这不是“standin-reload.mp4”这个文件');
  await page.setInputFiles('#u-file', file);
  await expect(page.locator('#u-start')).toHaveText('继续上传');
  await page.click('#u-start');
  await expect(page.locator('#lib-admin .lib-card', { hasText: '化疗后怎么吃' })).toBeVisible({ timeout: 30_000 });
  expect(after.filter((r) => r.method === 'POST')).toHaveLength(0);
  expect(after[0].method).toBe('HEAD');
  expect(Number(after.find((r) => r.method === 'PATCH').offset)).toBeGreaterThan(0);
  await expect(page.locator('#up-pending')).toBeHidden();
  expect(readFileSync(file).length).toBe(lib.videos[0].bytes);
  await ctx.close();
});

test('host: record toggle, recording actions and attaching a library video (API stood in)', async ({ browser, server }) => {
  const { session } = await createSession(server, { title: 'Stomach cancer: early signs' });
  const mp4 = makeMp4('attach.mp4', { seconds: 4 });
  const { ctx, page } = await hostPage(browser, server);
  const lib = standInLibrary(page, { mp4 });
  await lib.install(ctx);
  lib.videos.push({ id: 'v1', title: 'What a gastroscopy is like', topic: 'Before the exam', expert: 'Dr. Chen', language: 'en', duration_ms: 4000, url: '/api/videos/v1/video.mp4' });
  const patched = [];
  let current = { ...session, record: true, videos: [] };
  await page.route(`**/api/sessions/${session.id}`, async (route) => {
    if (route.request().method() !== 'PATCH') return route.fallback();
    const body = JSON.parse(route.request().postData());
    patched.push(body);
    current = { ...current, ...body };
    return route.fulfill({ json: { session: current } });
  });
  await page.route('**/api/sessions', async (route) => {
    const res = await route.fetch();
    const data = await res.json();
    data.sessions = data.sessions.map((s) => (s.id === session.id ? { ...s, ...current } : s));
    return route.fulfill({ json: data });
  });
  let deleted = 0;
  await page.route(`**/api/sessions/${session.id}/recording`, (route) => {
    if (route.request().method() === 'DELETE') { deleted += 1; return route.fulfill({ status: 204 }); }
    return deleted ? route.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'none' } } })
      : route.fulfill({ json: { session: session.id, state: 'ended', duration_ms: 754_000, bytes: 52_428_800, download: `/api/sessions/${session.id}/recording.mp4`, chapters: [] } });
  });
  await page.reload();
  const row = page.locator('.session-card', { hasText: 'Stomach cancer: early signs' });
  await row.getByRole('button', { name: 'Links & QR code' }).click();
  await expect(row.locator('[data-recording="ended"]')).toContainText('12:34');
  await row.locator(`input[data-record="${session.id}"]`).uncheck();
  await expect.poll(() => patched.at(-1)).toEqual({ record: false });
  await row.locator(`select[data-attach-when="${session.id}"]`).selectOption('before');
  await row.getByRole('button', { name: 'Attach' }).click();
  await expect.poll(() => patched.at(-1)).toEqual({ videos: [{ video: 'v1', when: 'before' }] });
  await expect(row.locator('.attached-admin')).toContainText('What a gastroscopy is like · Watch before');
  await row.locator('.host-block').first().scrollIntoViewIfNeeded();
  await shot(page, 'host-session-recording-en');
  page.once('dialog', (d) => d.accept());
  await row.locator(`[data-delete-recording="${session.id}"]`).click();
  await expect(row.locator('[data-recording="none"]')).toBeVisible();
  expect(deleted).toBe(1);
  for (const block of await row.locator('.host-block').all()) expect(await block.evaluate((el) => parseFloat(getComputedStyle(el).fontSize))).toBeGreaterThanOrEqual(16);
  expect(await tooSmallOrCut(page, 14, '.session-card .host-block')).toEqual([]);
  await ctx.close();
});
