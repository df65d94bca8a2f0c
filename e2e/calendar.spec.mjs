// Issue 13.8, the session list and the poster: "add to calendar" for a scheduled session, so a
// patient who found it early comes back on time. On `/`, in Chinese and English at 360×640: every
// scheduled session, and only those, has a link of its own (not inside the card's link) to
// `/api/sessions/{id}/calendar.ics`; tapping it downloads the file; the file is `text/calendar`
// with the title, the patient link and a reminder 15 minutes before. The host page hands out the
// venue screen's link; the poster of a scheduled session says the page behind its code offers
// the calendar (paper cannot hold the link itself).
import { readFile } from 'node:fs/promises';
import { test, expect, createSession, shot, unreadable } from './server.mjs';

const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

/** The iCalendar text with its folded lines joined again (RFC 5545 §3.1). */
const unfold = (ics) => ics.replace(/\r\n[ \t]/g, '');
/** A title as an iCalendar TEXT value. */
const icsText = (s) => s.replace(/\\/g, '\\\\').replace(/;/g, '\\;').replace(/,/g, '\\,').replace(/\n/g, '\\n');

test('session list: add to calendar on scheduled sessions only (zh, en); the file is text/calendar with the title', async ({ browser, server }) => {
  const stamp = Date.now();
  // a Chinese title with a comma: escaped in the file, and long enough to be folded
  const sched = await createSession(server, {
    title: `结直肠癌筛查：粪便潜血、肠镜，怎么选？ Colon screening ${stamp}`,
    expert_name: 'Dr. Zhao', scheduled_start: new Date(Date.now() + 2 * 86400_000).toISOString(),
  });
  const live = await createSession(server, { title: `Live now ${stamp}`, expert_name: 'Dr. Live' });
  const ended = await createSession(server, { title: `Cancelled ${stamp}`, expert_name: 'Dr. Gone' });
  const setState = async (s, state) => {
    const res = await fetch(`${server.url}/api/sessions/${s.session.id}/state`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.admin_token}` }, body: JSON.stringify({ state }),
    });
    expect(res.status).toBe(200);
  };
  await setState(live, 'live');
  await setState(ended, 'ended');

  for (const lang of ['zh', 'en']) {
    const ctx = await browser.newContext({ ...PHONE, locale: lang === 'zh' ? 'zh-CN' : 'en-US', acceptDownloads: true });
    const page = await ctx.newPage();
    await page.goto(`${server.url}/`);
    await expect(page.locator('html')).toHaveAttribute('lang', lang === 'zh' ? 'zh-CN' : 'en');
    const item = (s) => page.locator(`li.session-item[data-session="${s.session.id}"]`);
    await expect(item(sched)).toBeVisible();
    await expect(item(live)).toBeVisible();
    await expect(item(ended)).toBeVisible();

    const link = item(sched).locator('a.calendar-link');
    await expect(link).toHaveCount(1);
    await expect(link).toHaveText(lang === 'zh' ? '添加到我的日历' : 'Add to my calendar');
    await expect(link).toHaveAttribute('href', `/api/sessions/${sched.session.id}/calendar.ics`);
    await expect(link).toHaveAttribute('aria-label', new RegExp(lang === 'zh' ? '添加到我的日历' : 'to my calendar'));
    // its own link, not one nested in the card's (which opens the session)
    expect(await link.evaluate((a) => a.parentElement.closest('a'))).toBeNull();
    await expect(item(live).locator('a.calendar-link')).toHaveCount(0);
    await expect(item(ended).locator('a.calendar-link')).toHaveCount(0);
    // every scheduled card on the list has one, and no other card
    const byState = await page.$$eval('li.session-item', (items) => items.map((li) => ({
      scheduled: li.querySelector('.session-card').classList.contains('scheduled'),
      links: li.querySelectorAll('a.calendar-link').length,
      href: (li.querySelector('a.calendar-link') || {}).getAttribute?.('href') || null,
      id: li.dataset.session,
    })));
    for (const row of byState) {
      expect(row.links, `session ${row.id}`).toBe(row.scheduled ? 1 : 0);
      if (row.scheduled) expect(row.href).toBe(`/api/sessions/${row.id}/calendar.ics`);
    }

    // a thumb can hit it; an older patient can read it
    const box = await link.boundingBox();
    expect(box.height).toBeGreaterThanOrEqual(44);
    expect(await unreadable(page, 14)).toEqual([]);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await link.scrollIntoViewIfNeeded();
    await shot(page, `calendar-list-360-${lang}`);

    // what the link gives: the browser hands over a file, which is the session's event
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    expect(download.suggestedFilename()).toBe('oncolive.ics');
    const downloaded = unfold(await readFile(await download.path(), 'utf8'));
    expect(downloaded).toContain(`SUMMARY:${icsText(sched.session.title)}\r\n`);

    const res = await page.request.get(new URL(await link.getAttribute('href'), server.url).href);
    expect(res.status()).toBe(200);
    expect(res.headers()['content-type']).toMatch(/^text\/calendar\b/);
    const ics = unfold(await res.text());
    expect(ics).toMatch(/^BEGIN:VCALENDAR\r\n/);
    expect(ics).toContain(`SUMMARY:${icsText(sched.session.title)}\r\n`);
    expect(ics).toContain(`URL:${sched.links.patient}\r\n`);
    expect(ics).toContain('TRIGGER:-PT15M\r\n');
    await ctx.close();
  }
});

test('host page: the venue screen link; the poster of a scheduled session says the page offers the calendar', async ({ browser, server }) => {
  const s = await createSession(server, { title: `Poster ${Date.now()}`, expert_name: 'Dr. Paper' });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const host = await ctx.newPage();
  await host.goto(`${server.url}/host#token=${server.admin_token}`);
  const row = host.locator(`.session-card[data-session="${s.session.id}"]`);
  await row.getByRole('button', { name: 'Links & QR code' }).click();
  await expect(row.locator('input[data-link="venue"]')).toHaveValue(`${s.links.patient}/venue`);
  const venue = await fetch(`${server.url}/s/${s.session.id}/venue`);
  expect(venue.status).toBe(200);

  await host.evaluate(() => { window.print = () => {}; });
  await row.getByRole('button', { name: 'Print poster' }).click();
  const poster = host.locator('.print-root');
  await expect(poster.locator('.p-url')).toHaveText(s.links.patient);
  await expect(poster.locator('.p-cal')).toHaveCount(2);
  await expect(poster.locator('.p-cal[lang="zh-CN"]')).toContainText('日历');
  await expect(poster.locator('.p-cal[lang="en"]')).toContainText('calendar');
  await host.emulateMedia({ media: 'print' });
  await shot(host, 'calendar-poster', { fullPage: true });
  await ctx.close();
});
