// The venue screen (/s/{id}/venue): what a hall of a county hospital projects. At 1920×1080 and
// 1280×720, in Chinese and English: the question being answered, the top questions in vote
// order (at least three, each wholly inside its box), the QR code loaded, the disclaimer, video
// (or the waiting state), nothing outside the screen, no two parts overlapping, no text wider
// than its box, the picture and the code large, nothing under 24 px. The link under the code is
// the server's public one. Screenshots go to e2e/screenshots/venue-*.png.
import { test, expect, createSession, shot, unreadable, startServer, routeWebFromCheckout } from './server.mjs';

const ANSWERING = '化疗期间可以吃海鲜吗？';
const Q1 = 'How often should I have a CT scan after lung surgery?';
const Q2 = '乳腺癌术后多久可以开始锻炼？';
const Q3 = 'Is a PET-CT necessary before surgery?';
const Q4 = '我父亲今年七十岁，肺部结节八毫米，医生建议观察三个月再复查，但我们很担心，是否应该尽快做穿刺活检，还是可以先吃药控制，另外复查时需要做增强CT吗？';

/**
 * Send hub requests with `token` from a page of the server's origin (Node 20 has no WebSocket);
 * resolves with the acks, rejects on an `error` reply.
 */
async function hubRequests(page, token, requests) {
  return page.evaluate(async ({ token, requests }) => {
    const ws = new WebSocket(`ws://${location.host}/api/sessions/${requests.sid}/ws`, ['oncolive.v1', `bearer.${token}`]);
    const replies = new Map();
    const waiting = new Map();
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.req && waiting.has(m.req)) { waiting.get(m.req)(m); waiting.delete(m.req); }
      else if (m.req) replies.set(m.req, m);
    };
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    const out = [];
    let n = 0;
    for (const body of requests.list) {
      const req = `t${++n}`;
      const reply = await new Promise((resolve) => { waiting.set(req, resolve); ws.send(JSON.stringify({ ...body, req })); });
      if (reply.type === 'error') throw new Error(`${body.type}: ${reply.code} ${reply.message}`);
      out.push(reply);
    }
    ws.close(1000);
    return out;
  }, { token, requests });
}

async function joinPatient(server, sid) {
  const res = await fetch(`${server.url}/api/sessions/${sid}/join`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  expect(res.status).toBe(201);
  return (await res.json()).token;
}

async function relayMounted(request, url, sid) {
  const res = await request.post(`${url}/api/sessions/${sid}/whep`, { headers: { 'Content-Type': 'application/sdp' }, data: 'v=0' });
  return res.status() !== 404 && res.status() !== 405;
}

/** Anything that scrolls or lies outside the viewport (visible elements only). */
async function outside(page) {
  return page.evaluate(() => {
    const out = [];
    const W = window.innerWidth;
    const H = window.innerHeight;
    const d = document.documentElement;
    if (d.scrollWidth > W || d.scrollHeight > H) out.push(`document ${d.scrollWidth}×${d.scrollHeight} > ${W}×${H}`);
    if (document.body.scrollWidth > W || document.body.scrollHeight > H) out.push(`body ${document.body.scrollWidth}×${document.body.scrollHeight}`);
    for (const el of document.body.querySelectorAll('*')) {
      if (el.closest('[hidden]')) continue;
      const r = el.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      if (r.left < -0.5 || r.top < -0.5 || r.right > W + 0.5 || r.bottom > H + 0.5) out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} at ${Math.round(r.left)},${Math.round(r.top)}–${Math.round(r.right)},${Math.round(r.bottom)}`);
      // a box whose content is cut by its own overflow (line clamps excepted: they end in an ellipsis)
      const cs = getComputedStyle(el);
      const clamped = cs.webkitLineClamp && cs.webkitLineClamp !== 'none';
      if (!clamped && cs.textOverflow !== 'ellipsis' && el.id !== 'top-box' && el.id !== 'side' && el.scrollHeight > el.clientHeight + 2 && cs.overflowY !== 'visible') {
        out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} cuts its content (${el.scrollHeight} > ${el.clientHeight})`);
      }
    }
    return out;
  });
}


/**
 * What a room would see wrongly: two of the screen's parts overlapping, a question of the list
 * not wholly inside its box, a text wider than its box (scrollWidth), the picture or the code
 * too small to matter from the back.
 */
async function layoutFaults(page) {
  return page.evaluate(() => {
    const out = [];
    const W = window.innerWidth;
    const H = window.innerHeight;
    const box = (el) => el.getBoundingClientRect();
    const visible = (el) => el && !el.closest('[hidden]') && getComputedStyle(el).display !== 'none' && box(el).width > 0 && box(el).height > 0;
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${el.className}`;
    const meet = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
    const parts = ['#stage', '#qr', '.v-qr-text', '.v-head', '#now', '#top-box', '#disclaimer']
      .map((sel) => document.querySelector(sel)).filter(visible);
    for (let i = 0; i < parts.length; i += 1) {
      for (let j = i + 1; j < parts.length; j += 1) {
        if (meet(box(parts[i]), box(parts[j]))) out.push(`${name(parts[i])} overlaps ${name(parts[j])}`);
      }
    }
    const top = document.querySelector('#top-box');
    const inner = box(top);
    for (const q of document.querySelectorAll('#top .v-q')) {
      const r = box(q);
      if (r.top < inner.top - 0.5 || r.bottom > inner.bottom + 0.5) out.push(`question ${q.dataset.id} not inside the list (${Math.round(r.top)}–${Math.round(r.bottom)} in ${Math.round(inner.top)}–${Math.round(inner.bottom)})`);
    }
    for (const el of document.querySelectorAll('#title, #expert, #scan, #link, #now-text, .v-q-text, .v-q-votes, #disclaimer, #o-title, #o-detail, #o-count')) {
      if (visible(el) && el.scrollWidth > el.clientWidth + 1) out.push(`${name(el)} is wider than its box (${el.scrollWidth} > ${el.clientWidth})`);
    }
    const stage = document.querySelector('#stage');
    if (visible(stage) && (box(stage).width < 0.55 * W || box(stage).height < 0.5 * H)) out.push(`the picture is small: ${Math.round(box(stage).width)}×${Math.round(box(stage).height)}`);
    const qr = document.querySelector('#qr');
    if (visible(qr) && box(qr).height < 0.2 * H) out.push(`the QR code is small: ${Math.round(box(qr).height)} px`);
    return out;
  });
}

test('venue screen: answering, top questions, QR, disclaimer, video, at 1920×1080 and 1280×720 in zh and en', async ({ browser, server, request }) => {
  // four screens, each negotiating its own WHEP picture and waiting for it to advance
  test.setTimeout(360_000);
  const { session, links, tokens } = await createSession(server, {
    title: '肺结节与肺癌筛查：县医院专场 Lung nodules and screening',
    expert_name: 'Dr. Wang Li',
    expert_profile: { name: '王立', title: '主任医师', hospital: '省肿瘤医院', department: '胸外科', licence: '110000123456', verified: true },
  });
  const sid = session.id;
  const probe = await fetch(`${server.url}/s/${sid}/venue`);
  expect(probe.status, 'the server binary serves /s/{id}/venue (build it from this checkout: ONCOLIVE_BIN)').toBe(200);
  const site = await (await fetch(`${server.url}/api/site`)).json();

  // ---- questions: asked by three patients, approved, voted; one is being answered ----
  const driverCtx = await browser.newContext();
  const driver = await driverCtx.newPage();
  await driver.goto(`${server.url}/privacy.html`);
  const p = [await joinPatient(server, sid), await joinPatient(server, sid), await joinPatient(server, sid)];
  const ask = async (token, texts) => (await hubRequests(driver, token, { sid, list: [{ type: 'consent' }, ...texts.map((text) => ({ type: 'ask', text }))] })).slice(1).map((a) => a.question.id);
  const [idA, id1] = await ask(p[0], [ANSWERING, Q1]);
  const [id2, id3] = await ask(p[1], [Q2, Q3]);
  const [id4] = await ask(p[2], [Q4]);
  await hubRequests(driver, server.admin_token, { sid, list: [idA, id1, id2, id3, id4].map((question) => ({ type: 'approve', question })) });
  const votes = (token, ids) => hubRequests(driver, token, { sid, list: ids.map((question) => ({ type: 'vote', question })) });
  await votes(p[0], [id1, id2, id3, idA]);
  await votes(p[1], [id1, id2]);
  await votes(p[2], [id1]);
  await hubRequests(driver, server.admin_token, { sid, list: [{ type: 'answering', question: idA }] });

  // ---- the expert goes live with the fake camera when the relay is mounted ----
  const video = await relayMounted(request, server.url, sid);
  test.info().annotations.push({ type: 'video', description: video ? 'relay mounted: video checked' : 'relay not mounted: waiting state checked' });
  let expertCtx = null;
  if (video) {
    expertCtx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', permissions: ['camera', 'microphone'] });
    const expert = await expertCtx.newPage();
    await expert.goto(links.expert);
    await expect(expert.locator('#console')).toBeVisible();
    await expert.click('#btn-live');
    await expect(expert.locator('#pub-status')).toHaveText('Broadcasting.', { timeout: 20_000 });
  } else {
    const res = await fetch(`${server.url}/api/sessions/${sid}/state`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tokens.expert}` }, body: JSON.stringify({ state: 'live' }),
    });
    expect(res.status).toBe(200);
  }

  const TOP = [Q1, Q2, Q3, Q4];
  for (const [width, height] of [[1920, 1080], [1280, 720]]) {
    for (const lang of ['zh', 'en']) {
      // zh by the URL over an English browser; en by the browser's language alone
      const ctx = await browser.newContext({ viewport: { width, height }, locale: 'en-US' });
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text()); });
      await page.goto(`${server.url}/s/${sid}/venue${lang === 'zh' ? '?lang=zh' : ''}`);
      await expect(page.locator('html')).toHaveAttribute('lang', lang === 'zh' ? 'zh-CN' : 'en');

      await expect(page.locator('#now-text')).toHaveText(ANSWERING);
      await expect(page.locator('#now-label')).toHaveText(lang === 'zh' ? '正在回答' : 'Now answering');
      await expect.poll(() => page.locator('#top .v-q-text').count()).toBeGreaterThanOrEqual(3);
      const shown = await page.locator('#top .v-q-text').allTextContents();
      expect(shown).toEqual(TOP.slice(0, shown.length));
      expect(shown).not.toContain(ANSWERING);
      await expect(page.locator('#top .v-q-votes').first()).toHaveText(lang === 'zh' ? '3 票' : '3 votes');
      await expect.poll(() => page.$eval('#qr', (img) => img.naturalWidth)).toBeGreaterThan(0);
      await expect(page.locator('#scan')).toHaveText('扫码提问 / Scan to ask');
      await expect(page.locator('#link')).toHaveText(`${new URL(server.url).host}/s/${sid}`);
      await expect(page.locator('#disclaimer')).toHaveText(site.disclaimer[lang]);
      await expect(page.locator('#title')).toHaveText(session.title);
      await expect(page.locator('#expert .v-verified')).toHaveText(lang === 'zh' ? '✓ 已核验' : '✓ Verified');
      await expect(page.locator('#live')).toBeVisible();
      if (video) {
        await expect.poll(() => page.$eval('#video', (v) => v.videoWidth), { timeout: 30_000 }).toBeGreaterThan(0);
        const t0 = await page.$eval('#video', (v) => v.currentTime);
        await expect.poll(() => page.$eval('#video', (v) => v.currentTime), { timeout: 10_000 }).toBeGreaterThan(t0 + 0.5);
        await expect(page.locator('#overlay')).toBeHidden();
        // unmuted autoplay refused (no gesture): one big button; clicking it gives sound
        if (await page.$eval('#video', (v) => v.muted)) {
          await expect(page.locator('#sound')).toBeVisible();
          await expect(page.locator('#sound')).toContainText(lang === 'zh' ? '点击开启声音' : 'Click to start sound');
        }
      } else {
        await expect(page.locator('#o-title')).toHaveText(lang === 'zh' ? '等待专家开启摄像头' : "Waiting for the expert's camera");
      }
      // the question being answered at ≥ 32 px on 1080p, the queue too; nothing under 24 px anywhere
      if (height === 1080) {
        expect(await page.$eval('#now-text', (el) => parseFloat(getComputedStyle(el).fontSize))).toBeGreaterThanOrEqual(32);
        expect(await page.$eval('#top .v-q-text', (el) => parseFloat(getComputedStyle(el).fontSize))).toBeGreaterThanOrEqual(32);
      }
      // the long question is clamped with an ellipsis when shown
      expect(await unreadable(page, 24)).toEqual([]);
      expect(await outside(page)).toEqual([]);
      expect(await layoutFaults(page)).toEqual([]);
      await shot(page, `venue-live-${width}x${height}-${lang}`);
      if (video && await page.locator('#sound').isVisible()) {
        await page.click('#sound');
        await expect(page.locator('#sound')).toBeHidden();
        expect(await page.$eval('#video', (v) => v.muted)).toBe(false);
      }
      expect(errors).toEqual([]);
      await ctx.close();
    }
  }

  // ---- before the start: a countdown; after the end: thank you and the replay's QR ----
  const later = await createSession(server, { title: 'Living well after breast cancer', expert_name: 'Dr. Chen' });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, locale: 'zh-CN' });
  const page = await ctx.newPage();
  await page.goto(`${server.url}/s/${later.session.id}/venue`);
  await expect(page.locator('#o-title')).toHaveText('距离开始');
  await expect(page.locator('#o-count')).toHaveText(/^\d+:\d\d:\d\d$|^\d\d:\d\d$/);
  await expect(page.locator('#top-empty')).toBeVisible();
  expect(await outside(page)).toEqual([]);
  expect(await unreadable(page, 24)).toEqual([]);
  expect(await layoutFaults(page)).toEqual([]);
  await shot(page, 'venue-scheduled-1280x720-zh');
  const end = await fetch(`${server.url}/api/sessions/${later.session.id}/state`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` }, body: JSON.stringify({ state: 'ended' }),
  });
  expect(end.status).toBe(200);
  await expect(page.locator('#o-title')).toHaveText('感谢观看！');
  await expect.poll(() => page.$eval('#replay-qr', (img) => img.naturalWidth)).toBeGreaterThan(0);
  expect(await outside(page)).toEqual([]);
  expect(await layoutFaults(page)).toEqual([]);
  await shot(page, 'venue-ended-1280x720-zh');
  await ctx.close();
  if (expertCtx) await expertCtx.close();
  await driverCtx.close();
});

// The longest the right column gets: a two-line title and expert line, a three-line question
// being answered, questions that all take two lines, a disclaimer of two lines. Three of the
// top questions still fit at 1280×720, wholly, in both languages.
test('venue screen at 1280×720: three top questions fit under the longest texts', async ({ browser, server }) => {
  const long = (zh, en) => `${zh} ${en}`;
  const { session } = await createSession(server, {
    title: long('晚期肺癌靶向治疗与免疫治疗：县域患者怎样选择、怎样随访、怎样应对副作用', 'Targeted and immune therapy for advanced lung cancer in county hospitals'),
    expert_name: 'Dr. Ouyang',
    expert_profile: { name: '欧阳明远', title: '主任医师、教授、博士生导师', hospital: '中国医学科学院肿瘤医院深圳医院', department: '胸部肿瘤内科', licence: '110000123456', verified: true },
  });
  const sid = session.id;
  const driverCtx = await browser.newContext();
  const driver = await driverCtx.newPage();
  await driver.goto(`${server.url}/privacy.html`);
  const texts = [
    '我母亲七十二岁，肺腺癌四期，EGFR突变，吃了一年靶向药后复查发现耐药，医生建议换三代药或者化疗联合免疫治疗，我们住在县城，每个月去省城复查很困难，请问哪种方案更适合她，副作用怎么在家里观察？',
    'After two years on targeted therapy my father has a new cough and the CT shows a small shadow; is it resistance or an infection, and which tests should we ask the county hospital for first?',
    '免疫治疗期间出现皮疹和腹泻，县医院说先观察，需要停药吗？什么情况必须马上去大医院？还有甲状腺指标异常要不要吃药？',
    'Can immunotherapy be given at our county hospital instead of the provincial cancer centre, and what should the local doctors watch for between the infusions?',
  ];
  const patients = [await joinPatient(server, sid), await joinPatient(server, sid)];
  const ids = [];
  for (const [i, text] of texts.entries()) {
    const [, ack] = await hubRequests(driver, patients[i % 2], { sid, list: [{ type: 'consent' }, { type: 'ask', text }] });
    ids.push(ack.question.id);
  }
  await hubRequests(driver, server.admin_token, { sid, list: [...ids.map((question) => ({ type: 'approve', question })), { type: 'answering', question: ids[0] }] });
  const res = await fetch(`${server.url}/api/sessions/${sid}/state`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` }, body: JSON.stringify({ state: 'live' }),
  });
  expect(res.status).toBe(200);
  const site = await (await fetch(`${server.url}/api/site`)).json();
  const disclaimer = {
    zh: `${site.disclaimer.zh}本场内容由医院健康教育科审核，仅供参考，具体诊疗请遵从您的主治医生，用药调整请勿自行决定。`,
    en: `${site.disclaimer.en} Reviewed by the hospital's health education office; follow your own doctor.`,
  };
  for (const lang of ['zh', 'en']) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, locale: 'en-US' });
    // the operator's disclaimer, made long (it is a server flag; this stands in for it)
    await ctx.route((u) => u.pathname === '/api/site', (route) => route.fulfill({ json: { ...site, disclaimer } }));
    const page = await ctx.newPage();
    await page.goto(`${server.url}/s/${sid}/venue?lang=${lang}`);
    await expect(page.locator('#disclaimer')).toHaveText(disclaimer[lang]);
    await expect(page.locator('#now-text')).toHaveText(texts[0]);
    await expect.poll(() => page.locator('#top .v-q-text').count()).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#top .v-q-text').allTextContents()).toEqual(texts.slice(1, 4));
    // the texts are as long as they get: clamped, not shorter
    const lines = await page.$eval('#disclaimer', (el) => (el.clientHeight - parseFloat(getComputedStyle(el).paddingTop) * 2) / parseFloat(getComputedStyle(el).lineHeight));
    expect(Math.round(lines), 'the disclaimer takes two lines').toBe(2);
    expect(await page.$eval('#now-text', (el) => el.scrollHeight > el.clientHeight + 2)).toBe(true);
    expect(await unreadable(page, 24)).toEqual([]);
    expect(await outside(page)).toEqual([]);
    expect(await layoutFaults(page)).toEqual([]);
    await shot(page, `venue-longest-1280x720-${lang}`);
    await ctx.close();
  }
  await driverCtx.close();
});

// The link under the code is the code's own: the server's public URL (--public-url), not the
// address the hall's machine opened, which on a hospital network or behind a proxy differs.
test('venue screen: the link under the QR code is the server\'s public link, not the kiosk\'s address', async ({ browser }) => {
  const PUBLIC = 'https://hall.example.org';
  const own = await startServer({ args: ['--public-url', PUBLIC], env: { RUST_LOG: 'info' } });
  try {
    // the ready file names the public URL; the address it listens on is in its log
    const log = () => own.logs.join('').replace(/\u001b\[[0-9;]*m/g, '');
    await expect.poll(() => /addr=\S+/.test(log()), { message: 'the server logs the address it listens on' }).toBe(true);
    const addr = /addr=(\S+)/.exec(log());
    const origin = `http://${addr[1]}`;
    const { session, links } = await createSession({ url: origin, admin_token: own.admin_token }, { title: 'Public link' });
    expect(links.patient).toBe(`${PUBLIC}/s/${session.id}`);
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, locale: 'en-US' });
    await routeWebFromCheckout(ctx, origin);
    const page = await ctx.newPage();
    await page.goto(`${origin}/s/${session.id}/venue`);
    await expect(page.locator('#link')).toHaveText(`hall.example.org/s/${session.id}`);
    await expect(page.locator('#qr')).toHaveAttribute('alt', `hall.example.org/s/${session.id}`);
    await expect.poll(() => page.$eval('#qr', (img) => img.naturalWidth)).toBeGreaterThan(0);
    expect(await layoutFaults(page)).toEqual([]);
    await ctx.close();
  } finally {
    await own.stop();
  }
});
