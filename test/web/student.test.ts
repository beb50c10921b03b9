import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestStack } from '../helpers/stack.js';
import { startWebStack, webLink } from './helpers.js';

const SCREENSHOTS = join(import.meta.dirname, '..', '..', 'docs', 'screenshots');

/** Types a line into the visible terminal of a tab and waits for `expected` on screen. */
async function run(page: Page, node: string, line: string, expected: string | RegExp) {
  await page.click(`#tabs [data-node="${node}"]`);
  const pane = page.locator(`.pane[data-node="${node}"]`);
  await pane.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type(`${line}\n`);
  await expect
    .poll(() => pane.locator('.xterm-rows').innerText(), { timeout: 15_000 })
    .toMatch(expected);
}

describe('the student page', () => {
  let stack: TestStack;
  let browser: Browser;
  let alice: { id: string };
  let bob: { id: string };

  beforeAll(async () => {
    stack = await startWebStack(2);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
    const { service } = stack.labvirt;
    alice = await service.start({ student: 'alice', labId: 'fixture-three' });
    bob = await service.start({ student: 'bob', labId: 'fixture-three' });
    await stack.untilSession(alice.id, 'active', 60_000);
    await stack.untilSession(bob.id, 'active', 60_000);
  }, 150_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('hands out a link only for the session owner, once', async () => {
    expect((await webLink(stack, alice.id, 'bob')).body.error?.code).toBe('NOT_YOUR_SESSION');
    const link = await webLink(stack, alice.id, 'alice');
    expect(link.status).toBe(200);
    const page = await browser.newPage();
    await page.goto(link.body.url);
    expect(await page.locator('header h1').innerText()).toBe('Fixture three');
    // The token left the address bar; the second use is refused.
    expect(new URL(page.url()).search).toBe('');
    const again = await (await browser.newPage()).goto(link.body.url);
    expect(again?.status()).toBe(410);
    await page.context().close();
  });

  it('runs commands on the control plane and worker-1, checks, and passes once fixed in the terminal', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    await page.goto((await webLink(stack, alice.id)).body.url);
    expect(await page.locator('.description').innerText()).toContain('the "cluster" is a file');
    await expect.poll(() => page.locator('#time-left').innerText()).toMatch(/Time left: \d+:\d\d/);
    // Each sim guest is sandboxed with the VM's name as its hostname.
    await run(page, 'control-plane', 'hostname', /control-plane/);
    await run(page, 'worker-1', 'hostname', /worker-1/);
    await run(page, 'worker-1', 'cat /etc/fixture/state', /FIXME/);

    await page.click('#check');
    await expect
      .poll(() => page.locator('#output').innerText(), { timeout: 30_000 })
      .toMatch(/FAIL: \/etc\/fixture\/state says FIXME/);
    await page.screenshot({ path: join(SCREENSHOTS, 'student-check-failed.png') });

    await run(page, 'worker-1', 'echo OK > /etc/fixture/state && echo fixed-it', /fixed-it/);
    await page.click('#check');
    await expect
      .poll(() => page.locator('#output').innerText(), { timeout: 30_000 })
      .toMatch(/PASSED: score 1\/1/);
    await page.screenshot({ path: join(SCREENSHOTS, 'student-check-passed.png') });

    await page.click('#hint');
    await expect.poll(() => page.locator('#hints').innerText()).toBe('Hints used: 1/2');
    await page.context().close();
  }, 90_000);

  it("does not open another session's page or terminal with a student's cookie", async () => {
    const page = await browser.newPage();
    await page.goto((await webLink(stack, alice.id)).body.url);
    const other = await page.goto(`${stack.labvirt.apiUrl}/s/${bob.id}`);
    expect(other?.status()).toBe(401);
    expect(await page.locator('#message h1').innerText()).toBe('Sign in first');
    // From alice's page (same origin, her cookie sent): bob's terminal socket is refused.
    await page.goto(`${stack.labvirt.apiUrl}/s/${alice.id}`);
    const opened = await page.evaluate(
      ({ id, host }) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(`ws://${host}/s/${id}/terminal?node=control-plane`);
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('refused');
        }),
      { id: bob.id, host: new URL(stack.labvirt.apiUrl!).host },
    );
    expect(opened).toBe('refused');
    // A request without the page's header cannot act for her (another site's form cannot either).
    const forged = await page.request.post(`${stack.labvirt.apiUrl}/s/${alice.id}/stop`);
    expect(forged.status()).toBe(403);
    expect((await stack.labvirt.service.status(alice.id)).state).toBe('active');
    await page.context().close();
  });

  it('cuts the terminal when the session ends and says so on the page', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    await page.goto((await webLink(stack, bob.id)).body.url);
    await run(page, 'control-plane', 'echo still-here', /still-here/);
    await stack.labvirt.service.stop(bob.id);
    const pane = page.locator('.pane[data-node="control-plane"]');
    await expect
      .poll(() => pane.locator('.xterm-rows').innerText(), { timeout: 30_000 })
      .toMatch(/your lab session has ended\. This terminal is closed\./);
    await page.reload();
    expect(await page.locator('#ended').innerText()).toMatch(
      /This lab session has ended .*\(released\)/,
    );
    await page.screenshot({ path: join(SCREENSHOTS, 'student-session-ended.png') });
    await page.context().close();
  }, 60_000);
});
