import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestStack } from '../helpers/stack.js';
import { startWebStack } from './helpers.js';

const SCREENSHOTS = join(import.meta.dirname, '..', '..', 'docs', 'screenshots');

describe('the operator dashboard', () => {
  let stack: TestStack;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startWebStack(2);
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
    await page.click('button[type=submit]');
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
    await page.click('button[type=submit]');
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
    await page.screenshot({ path: join(SCREENSHOTS, 'admin-dashboard.png'), fullPage: true });

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
});
