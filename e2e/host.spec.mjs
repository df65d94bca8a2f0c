// The host edits a scheduled session from the host page; a patient already watching the session
// page sees the new title without reloading, and a live session's start time is locked.
import { test, expect, createSession } from './server.mjs';

const PHONE = { viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true };

test('a host renames and reschedules a session; patients see it live', async ({ browser, server }) => {
  const { session, links } = await createSession(server, { title: 'Colon health basics' });
  const patientCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const patient = await patientCtx.newPage();
  await patient.goto(links.patient);
  await patient.click('#join-btn');
  await expect(patient.locator('body')).toContainText('Colon health basics');

  const hostCtx = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const host = await hostCtx.newPage();
  await host.goto(`${server.url}/host#token=${server.admin_token}`);
  const row = host.locator('.session-card', { hasText: 'Colon health basics' });
  await row.getByRole('button', { name: 'Edit' }).click();
  await expect(host.locator('#f-title')).toHaveValue('Colon health basics');
  await expect(host.locator('#create-btn')).toHaveText('Save changes');
  await host.fill('#f-title', 'Colon health: FIT tests and colonoscopy');
  await host.fill('#f-start', '2027-01-15T09:30');
  await host.click('#create-btn');
  await expect(host.locator('.session-card', { hasText: 'FIT tests and colonoscopy' })).toBeVisible();
  await expect(host.locator('#create-btn')).toHaveText('Create session');

  await expect(patient.locator('body')).toContainText('FIT tests and colonoscopy');
  const shown = await (await fetch(`${server.url}/api/sessions/${session.id}`)).json();
  expect(new Date(shown.session.scheduled_start).getTime())
    .toBe(new Date(2027, 0, 15, 9, 30).getTime());

  // Once live, only the texts can change: the start time is locked in the form.
  await fetch(`${server.url}/api/sessions/${session.id}/state`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.admin_token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ state: 'live' }),
  });
  await host.click('#refresh');
  await host.locator('.session-card', { hasText: 'FIT tests' }).getByRole('button', { name: 'Edit' }).click();
  await expect(host.locator('#f-start')).toBeDisabled();
  await expect(host.locator('#create-error')).toContainText('live');
  await host.fill('#f-title', 'Colon health (live now)');
  await host.click('#create-btn');
  await expect(patient.locator('body')).toContainText('Colon health (live now)');
  await patientCtx.close();
  await hostCtx.close();
});
