import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestStack } from '../helpers/stack.js';
import { screenshot, startWebStack, webLink } from './helpers.js';

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

/** Types into a tab without waiting for anything. */
async function type(page: Page, node: string, line: string) {
  await page.click(`#tabs [data-node="${node}"]`);
  await page.locator(`.pane[data-node="${node}"] .xterm-helper-textarea`).focus();
  await page.keyboard.type(`${line}\n`);
}

/** What a tab's terminal shows (selected first: xterm.js does not render a hidden terminal). */
async function paneText(page: Page, node: string): Promise<string> {
  await page.click(`#tabs [data-node="${node}"]`);
  return page.locator(`.pane[data-node="${node}"] .xterm-rows`).innerText();
}

describe('the student page', () => {
  let stack: TestStack;
  /** labvirt's clock runs this far ahead of the real one (the expiry test moves it). */
  let skew = 0;
  let browser: Browser;
  let alice: { id: string };
  let bob: { id: string };

  beforeAll(async () => {
    // No idle cut while the expiry test moves labvirt's clock by half an hour.
    stack = await startWebStack(
      2,
      { ssh: { idleTimeoutMinutes: 240 } },
      { now: () => Date.now() + skew },
    );
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
    await screenshot(page, 'student-check-failed');

    await run(page, 'worker-1', 'echo OK > /etc/fixture/state && echo fixed-it', /fixed-it/);
    await page.click('#check');
    await expect
      .poll(() => page.locator('#output').innerText(), { timeout: 30_000 })
      .toMatch(/PASSED: score 1\/1/);
    await screenshot(page, 'student-check-passed');

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

  it('keeps the shell through a dropped connection when the node has tmux', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    // Keeps a hand on the page's WebSockets, to drop one as a network blip would.
    await page.addInitScript({
      content: `{
        const Native = window.WebSocket;
        window.openedSockets = [];
        window.WebSocket = class extends Native {
          constructor(url, protocols) {
            super(url, protocols);
            window.openedSockets.push(this);
          }
        };
      }`,
    });
    await page.goto((await webLink(stack, alice.id)).body.url);
    await run(page, 'control-plane', 'export MARK=42; echo marked-$((40 + 2))', /marked-42/);
    const dropped = await page.evaluate(`(() => {
      const live = window.openedSockets.filter(
        (ws) => ws.url.includes('node=control-plane') && ws.readyState === WebSocket.OPEN,
      );
      for (const ws of live) ws.close();
      return live.length;
    })()`);
    expect(dropped).toBe(1);
    await expect
      .poll(() => page.locator('#notices').innerText(), { timeout: 20_000 })
      .toMatch(/control-plane: Reconnected: your shell kept running/);
    await run(page, 'control-plane', 'echo mark=$MARK', /mark=42/);
    await screenshot(page, 'student-reconnected');
    await page.context().close();
  }, 60_000);

  it('warns every tab before the end, then cuts the terminals at expiry and says so', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    await page.goto((await webLink(stack, bob.id)).body.url);
    await run(page, 'control-plane', 'echo still-here', /still-here/);
    await run(page, 'worker-1', 'echo here-too', /here-too/);
    const expiresAt = Date.parse((await stack.labvirt.service.status(bob.id)).expiresAt!);

    // Half a minute before the end: the gateway warns the control plane's
    // shell and, through its notices channel, the worker's tab alike.
    skew = expiresAt - 30_000 - Date.now();
    for (const node of ['control-plane', 'worker-1']) {
      await expect
        .poll(() => page.locator('#notices').innerText(), { timeout: 20_000 })
        .toMatch(new RegExp(`${node}: your lab session ends in \\d+ s`));
    }
    await screenshot(page, 'student-expiry-warning');

    // Time is up: the expiry sweep ends the session, and its notice cuts the
    // open terminals at once (not at the gateway's next periodic recheck).
    skew = expiresAt + 1000 - Date.now();
    await stack.labvirt.runMaintenance('expire');
    expect((await stack.labvirt.service.status(bob.id)).endedReason).toBe('expired');
    for (const node of ['control-plane', 'worker-1']) {
      await expect
        .poll(() => paneText(page, node), { timeout: 15_000 })
        .toMatch(/your lab session has ended\. This terminal is closed\./);
    }
    expect(await page.locator('#notices').innerText()).toMatch(
      /worker-1: your lab session has ended; disconnecting\./,
    );
    // Typing does not open a new shell.
    await type(page, 'control-plane', 'echo nope');
    expect(await paneText(page, 'control-plane')).not.toMatch(/^nope$/m);
    await page.reload();
    expect(await page.locator('#ended').innerText()).toMatch(
      /This lab session has ended .*\(expired\)/,
    );
    await screenshot(page, 'student-session-ended');
    await page.context().close();
  }, 90_000);
});
