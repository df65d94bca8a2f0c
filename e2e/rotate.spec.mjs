// The host replaces a leaked expert or moderator link: the staff pages still open on the old
// link are closed with 4003 and say, in their reader's language, that the link was replaced;
// the new links work. On a phone, in both languages.
import { test, expect, createSession, shot } from './server.mjs';

const PHONE = { viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true };

const REVOKED = { en: 'The host replaced this link', zh: '主持方已更换此链接' };
const ROTATE = { en: 'Replace expert and moderator links', zh: '更换专家和主持链接' };
const LINKS = { en: 'Links & QR code', zh: '链接和二维码' };

for (const lang of ['zh', 'en']) {
  test(`rotating the staff links closes the old ones (${lang})`, async ({ browser, server }) => {
    const locale = lang === 'zh' ? 'zh-CN' : 'en-US';
    const title = `Rotate ${lang} ${Date.now()}`;
    const { links } = await createSession(server, { title });

    const hostCtx = await browser.newContext({ ...PHONE, locale });
    const host = await hostCtx.newPage();
    await host.goto(`${server.url}/host#token=${server.admin_token}`);
    const row = host.locator('.session-card', { hasText: title });
    await row.getByRole('button', { name: LINKS[lang] }).click();
    await expect(row.locator('input[data-link="moderator"]')).toHaveValue(/\/moderate#token=/);
    const before = await row.locator('input[data-link="moderator"]').inputValue();

    const staffCtx = await browser.newContext({ ...PHONE, locale });
    const mod = await staffCtx.newPage();
    const expert = await staffCtx.newPage();
    await mod.goto(links.moderator);
    await expert.goto(links.expert);
    await expect(mod.locator('#console')).toBeVisible();
    await expect(expert.locator('#console')).toBeVisible();

    host.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: ROTATE[lang] }).click();
    // the row shows the new links at once
    await expect(row.locator('input[data-link="moderator"]')).not.toHaveValue(before);
    const fresh = await row.locator('input[data-link="moderator"]').inputValue();
    await shot(host, `rotate-host-${lang}`);

    for (const page of [mod, expert]) {
      await expect(page.locator('#fatal')).toContainText(REVOKED[lang]);
      await expect(page.locator('#console')).toBeHidden();
    }
    await shot(mod, `rotate-revoked-moderator-${lang}`);
    await shot(expert, `rotate-revoked-expert-${lang}`);

    // The moderator's page keeps the old token in storage: the new link replaces it and works.
    const again = await staffCtx.newPage();
    await again.goto(fresh);
    await expect(again.locator('#console')).toBeVisible();
    await expect(again.locator('#conn')).toHaveAttribute('data-state', 'online');
    await hostCtx.close();
    await staffCtx.close();
  });
}
