import { describe, expect, it } from 'vitest';
import type { SessionView } from '../../src/sessions/types.js';
import { sessionPage } from '../../src/web/pages.js';

const session: SessionView = {
  id: 's-abcdefghij',
  student: 'alice',
  labId: 'demo',
  labTitle: 'Fix <the> "kubelet"',
  flavor: 'v1.30-3node',
  state: 'active',
  createdAt: '2026-12-05T09:00:00.000Z',
  expiresAt: '2026-12-05T10:00:00.000Z',
  hintsUsed: 0,
  hintsTotal: 2,
  labDescription: [
    '## Steps',
    'Run `kubectl get nodes`.',
    '<script>alert(1)</script> <img src=x onerror=alert(2)>',
    '[click](javascript:alert(3)) and [docs](https://kubernetes.io/)',
  ].join('\n\n'),
  connection: {
    mode: 'gateway',
    host: '127.0.0.1',
    port: 2222,
    user: 's-abcdefghij',
    command: 'ssh …',
    nodes: ['control-plane', 'worker-1'],
  },
};

describe('the student page', () => {
  const page = sessionPage(session);

  it('renders the lab description as Markdown, with its HTML shown as text and unsafe links dropped', () => {
    expect(page).toContain('<h2>Steps</h2>');
    expect(page).toContain('<code>kubectl get nodes</code>');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page).not.toMatch(/<img|onerror=alert\(2\)>|href="javascript:/);
    expect(page).toContain('<a href="https://kubernetes.io/">docs</a>');
  });

  it('escapes the title and loads only its own script, with no inline script', () => {
    expect(page).toContain('Fix &lt;the&gt; &quot;kubelet&quot;');
    const scripts = [...page.matchAll(/<script[^>]*>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((m) => m[0])).toEqual([
      '<script type="module" src="/web/assets/terminal.js"></script>',
    ]);
    expect(page).toContain('data-nodes="control-plane,worker-1"');
  });

  it('says which node restarted and that its changes are gone, only when one did', () => {
    expect(page).not.toContain('id="restarts"');
    const restarted = sessionPage({
      ...session,
      nodeRestarts: [{ node: 'worker-1', at: '2026-12-05T09:42:00.000Z' }],
    });
    expect(restarted).toContain(
      '<p>worker-1 restarted at 2026-12-05T09:42:00.000Z: its disk was reset, your changes on it are gone.</p>',
    );
    expect(restarted).toContain('role="alert"');
  });
});
