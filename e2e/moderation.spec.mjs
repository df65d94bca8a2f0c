// The moderator's tools beyond approve/reject: edit, merge, pin, post-moderation; and the
// patient page's states for a session that does not exist or has ended.
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { test, expect, createSession } from './server.mjs';

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'artifacts', 'screenshots');
const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

async function patient(browser, link, locale = 'en-US') {
  const ctx = await browser.newContext({ ...PHONE, locale });
  const page = await ctx.newPage();
  await page.goto(link);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  return page;
}

async function ask(page, text) {
  await page.fill('#ask-text', text);
  // the privacy notice is agreed to once, before the first question
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
  await expect(page.locator('#mine .q', { hasText: text })).toBeVisible();
}

async function moderator(browser, link) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await page.goto(link);
  await expect(page.locator('#console')).toBeVisible();
  return page;
}

test('edit before approving, merge a duplicate, pin', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'Moderation tools' });
  const p = await patient(browser, links.patient);
  const A = 'What is a PET-CT scan? My ID is 110101199001011234';
  const A2 = 'What is a PET-CT scan?';
  const B = 'How long does chemotherapy take?';
  const C = 'how long is chemo';
  await ask(p, A);
  await ask(p, B);
  await ask(p, C);
  const mod = await moderator(browser, links.moderator);
  await expect(mod.locator('#stat-pending')).toHaveText('3');

  // edit A (selected first: oldest) and approve the edited text
  await mod.keyboard.press('e');
  const area = mod.locator('#list .q.selected textarea');
  await expect(area).toBeFocused();
  await area.fill(A2);
  await mod.locator('#list .q.selected').getByRole('button', { name: 'Approve with changes' }).click();
  await expect(mod.locator('#stat-approved')).toHaveText('1');
  await p.click('#tab-queue');
  await expect(p.locator('#queue .q')).toHaveCount(1);
  await expect(p.locator('#queue .q').first()).toContainText(A2);
  await expect(p.locator('#queue .q').first()).toContainText('edited');
  await expect(p.locator('#queue')).not.toContainText('110101');

  // approve B, then merge C into B with the keyboard
  await mod.locator('#list .q', { hasText: B }).getByRole('button', { name: 'Approve' }).click();
  await expect(mod.locator('#list .q.selected')).toContainText(C);
  // Shift+M always opens the list (m alone merges into the top suggestion when there is one)
  await mod.keyboard.press('Shift+M');
  const select = mod.locator('#list .q.selected select');
  await expect(select).toBeFocused();
  const target = await select.locator('option', { hasText: B }).getAttribute('value');
  await select.selectOption(target);
  await select.press('Enter');
  await expect(mod.locator('#stat-pending')).toHaveText('0');
  await p.click('#tab-mine');
  await expect(p.locator('#mine .q', { hasText: C })).toContainText('Merged');
  await expect(p.locator('#mine .q', { hasText: C })).toContainText(`Merged with a similar question: “${B}”`);

  // a vote puts B first; pinning A puts it back on top
  await p.click('#tab-queue');
  await p.locator('#queue .q', { hasText: B }).locator('.vote').click();
  await expect.poll(() => p.locator('#queue .q .text').allTextContents()).toEqual([B, A2]);
  await mod.locator('#tabs button[data-tab="approved"]').click();
  await mod.locator('#list .q', { hasText: A2 }).getByRole('button', { name: 'Pin' }).click();
  await expect.poll(() => p.locator('#queue .q .text').allTextContents()).toEqual([A2, B]);
  await expect(p.locator('#queue .q').first()).toContainText('Pinned');
  await expect(mod.locator('#list .q', { hasText: A2 }).getByRole('button', { name: 'Unpin' })).toBeVisible();
  await mkdir(SHOTS, { recursive: true });
  await mod.screenshot({ path: join(SHOTS, 'moderator-approved-desktop.png') });
});

test('post-moderation: questions show at once; a rejection removes them', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'Post moderation', moderation: 'post' });
  const p = await patient(browser, links.patient, 'zh-CN');
  const other = await patient(browser, links.patient, 'en-US');
  const Q = '放疗期间可以吃什么？';
  await expect(p.locator('#ask-hint')).toHaveText('您的问题会立即对所有人显示。');
  await ask(p, Q);
  await expect(other.locator('#queue .q', { hasText: Q })).toBeVisible();
  const mod = await moderator(browser, links.moderator);
  await expect(mod.locator('#tabs button[aria-selected="true"]')).toHaveAttribute('data-tab', 'approved');
  await mod.locator('#list .q', { hasText: Q }).getByRole('button', { name: 'Reject' }).click();
  const reason = mod.locator('#list .q.selected input[type="text"]');
  await reason.fill('请咨询您的主治医生');
  await reason.press('Enter');
  await expect(other.locator('#queue .q', { hasText: Q })).toHaveCount(0);
  await p.click('#tab-mine');
  await expect(p.locator('#mine .q', { hasText: Q })).toContainText('未通过');
  await expect(p.locator('#mine .q', { hasText: Q })).toContainText('请咨询您的主治医生');
});

test('unknown and ended sessions show their state', async ({ browser, server }) => {
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await ctx.newPage();
  await page.goto(`${server.url}/s/00000000-0000-7000-8000-000000000000`);
  await expect(page.locator('#fatal')).toContainText('Session not found');
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, 'patient-not-found.png') });

  const { session } = await createSession(server, { title: 'Cancelled' });
  const res = await fetch(`${server.url}/api/sessions/${session.id}/state`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` },
    body: JSON.stringify({ state: 'ended' }),
  });
  expect(res.status).toBe(200);
  await page.goto(`${server.url}/s/${session.id}`);
  // an ended link opens the replay view; never recorded, it says the session has ended and why
  await expect(page.locator('#r-empty')).toContainText('This session has ended');
  await expect(page.locator('#r-empty')).toContainText('There is no replay');

  const staff = await ctx.newPage();
  await staff.goto(`${server.url}/s/${session.id}/moderate`);
  await expect(staff.locator('#fatal')).toContainText('missing its access key');
});

test('without GET /api/limits the patient page still works and the server has the last word', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'No limits', moderation: 'post' });
  const ctx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  await ctx.route('**/api/limits', (route) => route.abort());
  const page = await ctx.newPage();
  await page.goto(links.patient);
  await page.click('#join-btn');
  await expect(page.locator('#conn')).toHaveAttribute('data-state', 'online');
  expect(await page.getAttribute('#join-name', 'maxlength')).toBeNull();
  // no limit known: the count alone, and the ask goes to the server, which refuses it
  await page.fill('#ask-text', 'x'.repeat(501));
  await expect(page.locator('#ask-count')).toHaveText('501');
  // the privacy notice is agreed to once, before the first question
  if (await page.locator('#consent').isVisible()) await page.check('#consent-box');
  await page.click('#ask-btn');
  await expect(page.locator('.toast.bad')).toContainText('That was not accepted');
  await expect(page.locator('#ask-text')).toHaveValue('x'.repeat(501));
  await ctx.close();
});

test('keyboard moderation at speed: a a a approves three questions', async ({ browser, server }) => {
  const { links } = await createSession(server, { title: 'Fast moderation' });
  const p = await patient(browser, links.patient);
  for (const text of ['First question', 'Second question', 'Third question']) await ask(p, text);
  const mod = await moderator(browser, links.moderator);
  await expect(mod.locator('#stat-pending')).toHaveText('3');
  await mod.keyboard.press('a');
  await mod.keyboard.press('a');
  await mod.keyboard.press('a');
  await expect(mod.locator('#stat-approved')).toHaveText('3');
  await expect(mod.locator('#stat-pending')).toHaveText('0');
  await expect(mod.locator('.toast.bad')).toHaveCount(0);
  await p.click('#tab-queue');
  await expect.poll(() => p.locator('#queue .q .text').allTextContents()).toEqual(['First question', 'Second question', 'Third question']);
});
