import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { DevStackOptions } from '../../src/app/dev.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/** A stack with three-node envs warm (fixture-three: its check runs on worker-1). */
export async function startWebStack(
  warm: number,
  more: Record<string, unknown> = {},
  options: Partial<DevStackOptions> = {},
): Promise<TestStack> {
  const stack = await startTestStack({
    ...options,
    overrides: {
      flavors: {
        'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: 1 },
        'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: warm, maxTotal: warm + 1 },
      },
      ...more,
    },
  });
  await stack.fillPool('v1.30-3node', warm, { timeoutMs: 90_000 });
  return stack;
}

/** Asks the API for a session's single-use page link, as the CLI does. */
export async function webLink(stack: TestStack, sessionId: string, student?: string) {
  const res = await fetch(`${stack.labvirt.apiUrl}/v1/sessions/${sessionId}/web-link`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stack.apiToken}`,
      ...(student ? { 'x-labvirt-student': student } : {}),
    },
  });
  return {
    status: res.status,
    body: (await res.json()) as { url: string; error?: { code: string } },
  };
}

const SCREENSHOTS = join(import.meta.dirname, '..', '..', 'docs', 'screenshots');

/**
 * Writes docs/screenshots/<name>.png when LABVIRT_SCREENSHOTS=1 (to refresh
 * the documentation's pictures); otherwise takes none, so a test run leaves
 * the checkout as it found it.
 */
export async function screenshot(page: Page, name: string, fullPage = false): Promise<void> {
  if (process.env.LABVIRT_SCREENSHOTS !== '1') return;
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}
