import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/web/index.js';
import type { TestStack } from '../helpers/stack.js';
import { screenshot, startWebStack } from './helpers.js';

const PASSWORD = 'correct horse battery staple';
const ATTEMPTS_PER_MINUTE = 12;

describe('the operator dashboard', () => {
  let stack: TestStack;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startWebStack(2, {
      web: {
        operators: [{ username: 'olga', passwordHash: await hashPassword(PASSWORD) }],
        loginAttemptsPerMinute: ATTEMPTS_PER_MINUTE,
      },
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  }, 150_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('is closed without the API token', async () => {
    const res = await fetch(`${stack.labvirt.apiUrl}/admin/state`);
    expect(res.status).toBe(401);
    const page = await browser.newPage();
    await page.goto(`${stack.labvirt.apiUrl}/admin`);
    await page.fill('#token', 'not-the-token-at-all');
    await page.click('#login button[type=submit]');
    await expect.poll(() => page.locator('#login-error').innerText()).toBe('Wrong API token.');
    await page.context().close();
  });

  it('shows the filled pool, follows a session start live, and ends a session when confirmed', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const csp: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
    });
    const response = await page.goto(`${stack.labvirt.apiUrl}/admin`);
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.fill('#token', stack.apiToken);
    await page.click('#login button[type=submit]');
    const row = page.locator('#flavors tr[data-flavor="v1.30-3node"]');
    await expect.poll(() => row.locator('td').nth(1).innerText(), { timeout: 15_000 }).toBe('2');
    expect(await row.locator('td').nth(5).innerText()).toBe('2'); // target

    // Started elsewhere (the API, Slack…): the page hears it without a reload.
    const started = await stack.labvirt.service.start({ student: 'carol', labId: 'fixture-three' });
    await expect
      .poll(() => page.locator('#feed').innerText(), { timeout: 60_000 })
      .toContain(`session.ready sessionId=${started.id}`);
    await expect
      .poll(() => page.locator('#envs').innerText(), { timeout: 15_000 })
      .toMatch(new RegExp(`active\\s+\\S+ \\w+\\s+carol\\s+fixture-three\\s+${started.id}`));
    await screenshot(page, 'admin-dashboard', true);

    page.once('dialog', (d) => void d.accept());
    await page
      .locator('#envs tr', { hasText: started.id })
      .getByRole('button', { name: 'End session' })
      .click();
    await stack.until(
      async () => (await stack.labvirt.service.status(started.id)).state === 'ended',
      'the session to end',
    );
    expect((await stack.labvirt.service.status(started.id)).endedReason).toBe('released');
    expect(csp).toEqual([]);
    await page.context().close();
  }, 120_000);

  const login = (body: unknown) =>
    fetch(`${stack.labvirt.apiUrl}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-labvirt-web': '1' },
      body: JSON.stringify(body),
    });

  it('lets an operator sign in with a password, and says nothing about which part was wrong', async () => {
    const good = await login({ username: 'olga', password: PASSWORD });
    expect(good.status).toBe(200);
    const cookie = good.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^labvirt_admin=.*HttpOnly/);
    const state = await fetch(`${stack.labvirt.apiUrl}/admin/state`, {
      headers: { cookie: cookie.split(';')[0]! },
    });
    expect(state.status).toBe(200);
    // Signed in, a POST without the page's header (another site's form) changes nothing.
    const forged = await fetch(`${stack.labvirt.apiUrl}/admin/flavors/v1.30-1node/target`, {
      method: 'POST',
      headers: { cookie: cookie.split(';')[0]!, 'content-type': 'application/json' },
      body: JSON.stringify({ targetWarm: 1 }),
    });
    expect(forged.status).toBe(403);
    expect(await forged.json()).toEqual({
      error: { code: 'FORBIDDEN', message: 'missing header x-labvirt-web' },
    });
    expect(await stack.labvirt.store.warmTargetOverrides()).toEqual({});

    const wrongPassword = await login({
      username: 'olga',
      password: 'correct horse battery stapler',
    });
    const unknownUser = await login({ username: 'oleg', password: PASSWORD });
    expect(wrongPassword.status).toBe(401);
    expect(unknownUser.status).toBe(401);
    expect(wrongPassword.headers.get('set-cookie')).toBeNull();
    expect(await wrongPassword.json()).toEqual(await unknownUser.json());

    // The form at /admin/login, in the browser.
    const page = await browser.newPage();
    await page.goto(`${stack.labvirt.apiUrl}/admin/login`);
    await page.fill('#username', 'olga');
    await page.fill('#password', 'not it at all');
    await page.click('#password-login button[type=submit]');
    await expect
      .poll(() => page.locator('#login-error').innerText())
      .toBe('Wrong username or password.');
    await page.fill('#password', PASSWORD);
    await page.click('#password-login button[type=submit]');
    await expect.poll(() => page.locator('header').innerText()).toContain('signed in as olga');
    expect(new URL(page.url()).pathname).toBe('/admin');
    await page.context().close();
  }, 60_000);

  it('resizes a flavor when confirmed: the page shows the new target and the pool fills to it', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${stack.labvirt.apiUrl}/admin`);
    await page.fill('#token', stack.apiToken);
    await page.click('#login button[type=submit]');
    const row = page.locator('#flavors tr[data-flavor="v1.30-3node"]');
    await expect.poll(() => row.locator('td').nth(5).innerText(), { timeout: 15_000 }).toBe('2');

    // Dismissing the confirmation changes nothing.
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.type());
      void (d.type() === 'prompt' ? d.accept('3') : d.dismiss());
    });
    await row.getByRole('button', { name: 'Resize' }).click();
    await expect.poll(() => dialogs).toEqual(['prompt', 'confirm']);
    expect(await stack.labvirt.store.warmTargetOverrides()).toEqual({});

    page.removeAllListeners('dialog');
    page.on('dialog', (d) => void (d.type() === 'prompt' ? d.accept('3') : d.accept()));
    await row.getByRole('button', { name: 'Resize' }).click();
    await expect
      .poll(() => row.locator('td').nth(5).innerText(), { timeout: 15_000 })
      .toBe('3 (set)');
    await expect.poll(() => row.locator('td').nth(1).innerText(), { timeout: 90_000 }).toBe('3');
    expect(await stack.warmCount('v1.30-3node')).toBe(3);

    // Above maxTotal: refused, and the page says why.
    page.removeAllListeners('dialog');
    page.on('dialog', (d) => void (d.type() === 'prompt' ? d.accept('9') : d.accept()));
    await row.getByRole('button', { name: 'Resize' }).click();
    await expect
      .poll(() => page.locator('#action-status').innerText())
      .toMatch(/^Refused: .*maxTotal \(3\)/);
    await screenshot(page, 'admin-actions', true);
    await page.context().close();
  }, 150_000);

  it('limits sign-in attempts from one address, even with the right password', async () => {
    let status = 0;
    for (let i = 0; i <= ATTEMPTS_PER_MINUTE && status !== 429; i++) {
      status = (await login({ username: 'nobody', password: 'guess' })).status;
    }
    expect(status).toBe(429);
    const right = await login({ username: 'olga', password: PASSWORD });
    expect(right.status).toBe(429);
    expect(right.headers.get('set-cookie')).toBeNull();
  }, 60_000);
});
