// The WebSocket client's reconnect rules (docs/protocol.md, "Close codes" and "Reconnect
// rules"), driven by closing the patient's socket from the "server" side with Playwright's
// WebSocket routing, while the real server keeps running.
import { test, expect, createSession } from './server.mjs';

const PHONE = { viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true };

test('a dropped socket resumes with since and catches up; 1000 stays closed', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Resume test' });
  const mod = await (await browser.newContext()).newPage();
  await mod.goto(links.moderator);
  await expect(mod.locator('#console')).toBeVisible();

  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  const sockets = [];
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    const upstream = ws.connectToServer();
    sockets.push({ url: new URL(ws.url()), ws, upstream });
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  expect(sockets).toHaveLength(1);
  expect(sockets[0].url.searchParams.get('since')).toBeNull();

  await page.fill('#ask-text', 'Does radiotherapy make you radioactive?');
  // the privacy notice is agreed to once, before the first question
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
  await expect(page.locator('#mine .q')).toContainText('Waiting for review');

  // 4008 (flood): wait at least ten seconds before reconnecting. Meanwhile the moderator acts.
  const dropped = Date.now();
  await sockets[0].ws.close({ code: 4008, reason: 'flood' });
  await sockets[0].upstream.close();
  // ("offline" in a loopback-only namespace, where Chromium's navigator.onLine is false)
  await expect(page.locator('#conn')).toHaveAttribute('data-state', /^(reconnecting|offline)$/);
  await expect(page.locator('#banner')).toBeVisible();
  await expect(page.locator('#ask-btn')).toBeDisabled();
  await mod.locator('#list .q').getByRole('button', { name: 'Approve' }).click();
  await expect(mod.locator('#stat-approved')).toHaveText('1');

  await expect.poll(() => sockets.length, { timeout: 20_000 }).toBe(2);
  expect(Date.now() - dropped).toBeGreaterThanOrEqual(10_000);
  // Resumes rather than starting over. (It may be 0: the socket can drop between the ask's ack
  // and the pending question's event, and the client counts only events it received.)
  expect(sockets[1].url.searchParams.get('since')).not.toBeNull();
  const since = Number(sockets[1].url.searchParams.get('since'));
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await expect(page.locator('#mine .q')).toContainText('Approved');
  await expect(page.locator('#queue .q')).toHaveCount(1);
  await expect(page.locator('#banner')).toBeHidden();

  // 4000 (too slow): reconnect at once, not after the ten seconds a flood costs. (No wall-clock
  // assertion: the poll's bound is the check, kept well under ten seconds.)
  await sockets[1].ws.close({ code: 4000, reason: 'too slow' });
  await sockets[1].upstream.close();
  await expect.poll(() => sockets.length, { timeout: 8_000 }).toBe(3);
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  expect(Number(sockets[2].url.searchParams.get('since'))).toBeGreaterThanOrEqual(since);

  // 1000 (normal closure): do nothing until asked.
  await sockets[2].ws.close({ code: 1000 });
  await sockets[2].upstream.close();
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'closed');
  await page.waitForTimeout(2_000);
  expect(sockets).toHaveLength(3);
  await page.locator('#banner').getByRole('button', { name: 'Retry now' }).click();
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  expect(sockets).toHaveLength(4);
  await ctx.close();
});

test('a socket that went silent is replaced soon after a network change', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'Dead link' });
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  const sockets = [];
  let blackhole = false;
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    const upstream = ws.connectToServer();
    const first = sockets.length === 0;
    sockets.push(new URL(ws.url()));
    // the first socket stops carrying anything, like a phone that switched networks
    ws.onMessage((m) => { if (!(first && blackhole)) upstream.send(m); });
    upstream.onMessage((m) => { if (!(first && blackhole)) ws.send(m); });
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  blackhole = true;
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await expect.poll(() => sockets.length, { timeout: 10_000 }).toBe(2);
  expect(sockets[1].searchParams.get('since')).not.toBeNull();
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await page.fill('#ask-text', 'Still here?');
  // the privacy notice is agreed to once, before the first question
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
  await expect(page.locator('#mine .q')).toContainText('Waiting for review');
  await ctx.close();
});

test('an ask whose reply was lost is found after reconnecting, not sent twice', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'Lost reply' });
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  let cut = false;
  let sockets = 0;
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    const upstream = ws.connectToServer();
    sockets += 1;
    ws.onMessage((m) => {
      upstream.send(m);
      if (JSON.parse(String(m)).type === 'ask') cut = true;
    });
    upstream.onMessage((m) => {
      const type = JSON.parse(String(m)).type;
      // the question is stored, but the connection dies before its reply arrives
      if (cut && (type === 'ack' || type === 'question')) {
        cut = false;
        ws.close({ code: 1011, reason: 'internal' });
        upstream.close();
        return;
      }
      ws.send(m);
    });
  });
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  await page.fill('#ask-text', 'Is hair loss after chemo permanent?');
  // the privacy notice is agreed to once, before the first question
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
  await expect(page.locator('.toast', { hasText: 'We are checking whether your question arrived' })).toBeVisible();
  await expect(page.locator('.toast', { hasText: 'Your question did arrive.' })).toBeVisible({ timeout: 15_000 });
  expect(sockets).toBe(2);
  await expect(page.locator('#ask-text')).toHaveValue('');
  await page.click('#tab-mine');
  await expect(page.locator('#mine .q')).toHaveCount(1);
  await ctx.close();
});
