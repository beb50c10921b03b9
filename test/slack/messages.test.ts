import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CheckResult, LabSummary, PoolStatus, SessionView } from '../../src/sessions/types.js';
import { parseStudentId, studentIdOf } from '../../src/slack/identity.js';
import {
  checkResultMessage,
  expiryWarningMessage,
  hintMessage,
  homeView,
  labListMessage,
  sessionEndedMessage,
  sessionStatusMessage,
  usageMessage,
} from '../../src/slack/messages.js';

/**
 * Every message state, rendered from fixed session views. The renderings are
 * checked in under docs/slack/ (what the docs show): this test fails when
 * one differs, so they cannot drift. `UPDATE_SLACK_DOCS=1` rewrites them.
 */

const DOCS = join(import.meta.dirname, '..', '..', 'docs', 'slack');
const NOW = Date.parse('2026-03-02T10:20:00Z');

const base: SessionView = {
  id: 's-k3x9q2ab7c',
  student: 'T0001.U0001',
  labId: 'kubelet-down-worker',
  labTitle: 'The kubelet is down on a worker',
  labDescription:
    'worker-1 shows NotReady. Find out why and bring it back without rebuilding the node.',
  flavor: 'v1.30-3node',
  state: 'waiting',
  createdAt: '2026-03-02T10:00:00.000Z',
  hintsUsed: 0,
  hintsTotal: 3,
};

const active: SessionView = {
  ...base,
  state: 'active',
  envId: 'k3x9q2ab',
  readyAt: '2026-03-02T10:01:00.000Z',
  expiresAt: '2026-03-02T11:01:00.000Z',
  maxExpiresAt: '2026-03-02T12:01:00.000Z',
  hintsUsed: 1,
  connection: {
    mode: 'gateway',
    host: 'labs.example.org',
    port: 2222,
    user: 's-k3x9q2ab7c',
    command: 'ssh -i labvirt-s-k3x9q2ab7c.key -p 2222 s-k3x9q2ab7c@labs.example.org',
    nodes: ['control-plane', 'worker-1', 'worker-2'],
  },
};

const solved: SessionView = {
  ...active,
  solvedAt: '2026-03-02T10:19:00.000Z',
  score: 10,
  maxScore: 10,
};

const ended = (extra: Partial<SessionView>): SessionView => ({
  ...active,
  ...extra,
  state: 'ended',
  connection: undefined,
  endedAt: '2026-03-02T10:20:00.000Z',
});

const failingCheck: CheckResult = {
  sessionId: base.id,
  passed: false,
  score: 4,
  maxScore: 10,
  checks: [
    {
      name: 'node-ready',
      description: 'worker-1 is Ready',
      passed: false,
      points: 0,
      messages: ['worker-1 is NotReady', 'kubelet.service is inactive (dead)'],
    },
    {
      name: 'pods-running',
      description: 'the app pods run',
      passed: true,
      points: 4,
      messages: [],
    },
  ],
};

const labs: LabSummary[] = [
  {
    id: 'broken-coredns',
    title: 'DNS is broken',
    flavor: 'v1.30-1node',
    difficulty: 'easy',
    timeLimitMinutes: 30,
  },
  {
    id: 'kubelet-down-worker',
    title: 'The kubelet is down on a worker',
    flavor: 'v1.30-3node',
    difficulty: 'medium',
    timeLimitMinutes: 60,
  },
];

const pool: PoolStatus = {
  flavors: [
    {
      flavor: 'v1.30-3node',
      counts: {
        provisioning: 1,
        booting: 1,
        warm: 2,
        claimed: 0,
        preparing: 1,
        active: 5,
        releasing: 0,
        deleted: 0,
        failed: 0,
      },
      minWarm: 2,
      targetWarm: 4,
      maxTotal: 10,
      waiting: 1,
      capacityBlocked: false,
      scheduledTargets: [],
    },
  ],
};

const STATES: Record<string, () => unknown> = {
  'status-waiting': () =>
    sessionStatusMessage({ ...base, queue: { position: 2, estimateSeconds: 240 } }, { now: NOW }),
  'status-preparing': () =>
    sessionStatusMessage({ ...base, state: 'preparing', envId: 'k3x9q2ab' }, { now: NOW }),
  'status-preparing-slow': () =>
    sessionStatusMessage(
      {
        ...base,
        state: 'preparing',
        envId: 'k3x9q2ab',
        slow: {
          message: 'the machines are busy: setup is taking longer than usual',
          since: '2026-03-02T10:01:00.000Z',
          step: 'kubelet-down-worker/setup.sh',
          node: 'worker-1',
          retrySeconds: 180,
        },
      },
      { now: NOW },
    ),
  'status-active': () => sessionStatusMessage(active, { now: NOW }),
  'status-active-restarted': () =>
    sessionStatusMessage(
      { ...active, nodeRestarts: [{ node: 'worker-1', at: '2026-03-02T10:12:00.000Z' }] },
      { now: NOW },
    ),
  'status-active-ports': () =>
    sessionStatusMessage(
      {
        ...active,
        ports: {
          published: [
            {
              service: 'default/web',
              port: 80,
              protocol: 'TCP',
              studentNodePort: 31080,
              hostNodePort: 30417,
              address: 'labs.example.org:30417',
            },
          ],
          refused: [
            {
              service: 'default/dns',
              port: 53,
              protocol: 'SCTP',
              reason: 'protocol',
              message: 'dns:53 not published: only TCP and UDP ports are published',
            },
          ],
        },
      },
      { now: NOW },
    ),
  'status-solved': () => sessionStatusMessage(solved, { now: NOW }),
  'status-ended-solved': () =>
    sessionStatusMessage(ended({ ...solved, endedReason: 'released' }), { now: NOW }),
  'status-expired': () => sessionStatusMessage(ended({ endedReason: 'expired' }), { now: NOW }),
  'status-stopped': () => sessionStatusMessage(ended({ endedReason: 'released' }), { now: NOW }),
  'status-failed': () =>
    sessionStatusMessage(
      ended({
        readyAt: undefined,
        endedReason: 'failed',
        endedDetail: 'no environment could be prepared after 3 attempts',
      }),
      { now: NOW },
    ),
  'expiry-warning': () =>
    expiryWarningMessage({ ...active, expiresAt: '2026-03-02T10:25:00.000Z' }, { now: NOW }),
  'session-ended': () => sessionEndedMessage(ended({ endedReason: 'expired' }), { now: NOW }),
  'check-failed': () => checkResultMessage(active, failingCheck),
  hint: () =>
    hintMessage({ sessionId: base.id, index: 2, total: 3, text: 'Read `journalctl -u kubelet`.' }),
  'lab-list': () => labListMessage(labs, '/lab'),
  usage: () =>
    usageMessage('/lab', { problem: '`strat` is not a /lab command.', suggestion: '/lab start' }),
  'home-student': () =>
    homeView({
      now: NOW,
      current: [active],
      recent: [ended({ ...solved, id: 's-older00001', endedReason: 'released' })],
      labs,
    }),
  'home-operator': () =>
    homeView({
      now: NOW,
      current: [],
      recent: [],
      labs,
      operator: {
        pool,
        failures: [
          {
            at: NOW - 60_000,
            what: 'env q1w2e3r4 (v1.30-3node) attempt 1: VM worker-2 failed to boot',
          },
        ],
      },
    }),
};

describe('Slack messages', () => {
  it.each(Object.keys(STATES))('%s matches its checked-in rendering in docs/slack/', (name) => {
    const file = join(DOCS, `${name}.json`);
    const rendered = JSON.stringify(STATES[name]!(), null, 2) + '\n';
    if (process.env.UPDATE_SLACK_DOCS === '1') {
      mkdirSync(DOCS, { recursive: true });
      writeFileSync(file, rendered);
    }
    expect(existsSync(file), `${file} is missing: run with UPDATE_SLACK_DOCS=1`).toBe(true);
    expect(rendered).toBe(readFileSync(file, 'utf8'));
  });

  it('lists published apps with their host address, and refused ports with why', () => {
    const text = JSON.stringify(STATES['status-active-ports']!());
    expect(text).toContain('`default/web:80` → `labs.example.org:30417`');
    expect(text).toContain('dns:53 not published');
    expect(JSON.stringify(STATES['status-active']!())).not.toContain('published apps');
  });

  it('says which node restarted, when, and that its changes are gone', () => {
    const text = JSON.stringify(STATES['status-active-restarted']!());
    expect(text).toContain('*worker-1 restarted at <!date^');
    expect(text).toContain('|10:12 UTC>:* its disk was reset, your changes on it are gone.');
    expect(text).toContain('stop it and start it again');
    expect(JSON.stringify(STATES['status-active']!())).not.toContain('restarted');
  });

  it('shows the buttons each state allows', () => {
    const ids = (view: SessionView) =>
      sessionStatusMessage(view, { now: NOW })
        .blocks.filter((b) => b.type === 'actions')
        .flatMap((b) =>
          (b as { elements: { action_id: string }[] }).elements.map((e) => e.action_id),
        );
    expect(ids(active)).toEqual(['lab_check', 'lab_hint', 'lab_extend', 'lab_stop']);
    expect(ids({ ...active, hintsUsed: 3 })).toEqual(['lab_check', 'lab_extend', 'lab_stop']);
    expect(ids({ ...active, expiresAt: active.maxExpiresAt })).toEqual([
      'lab_check',
      'lab_hint',
      'lab_stop',
    ]);
    expect(ids({ ...base, queue: { position: 1, estimateSeconds: 0 } })).toEqual(['lab_stop']);
    expect(ids(ended({ endedReason: 'expired' }))).toEqual([]);
    const warning = expiryWarningMessage(
      { ...active, expiresAt: active.maxExpiresAt },
      { now: NOW },
    );
    expect(JSON.stringify(warning)).not.toContain('lab_extend');
    expect(JSON.stringify(warning)).toContain('longest time');
  });

  it('escapes what scripts and students control, and keeps within Slack limits', () => {
    const result = checkResultMessage(active, {
      ...failingCheck,
      checks: [
        {
          ...failingCheck.checks[0]!,
          messages: ['<!channel> look <https://evil.example|here> & ```break```', 'x'.repeat(5000)],
        },
      ],
    });
    const text = JSON.stringify(result);
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).not.toContain('<https://evil');
    for (const block of result.blocks) {
      const t = (block as { text?: { text: string } }).text?.text ?? '';
      expect(t.length).toBeLessThanOrEqual(3000);
    }
    const many = Array.from({ length: 150 }, (_, i) => ({ ...labs[0]!, id: `lab-${i}` }));
    const home = homeView({
      now: NOW,
      current: [active],
      recent: [],
      labs: many,
      operator: { pool, failures: [] },
    });
    expect(home.blocks.length).toBeLessThanOrEqual(100);
    expect(JSON.stringify(home)).toContain('more: `/lab list` shows them all');
    expect(JSON.stringify(home)).toContain('Operator: pools');
  });

  it('makes student ids from the org or team and the user, and reads them back', () => {
    expect(studentIdOf({ teamId: 'T0001', userId: 'U0001' })).toBe('T0001.U0001');
    expect(studentIdOf({ enterpriseId: 'E0001', teamId: 'T0001', userId: 'W0001' })).toBe(
      'E0001.W0001',
    );
    expect(() => studentIdOf({ teamId: 'T0001', userId: 'U00;rm' })).toThrow(/user id/);
    expect(() => studentIdOf({ teamId: '', userId: 'U0001' })).toThrow(/team/);
    expect(parseStudentId('T0001.U0001')).toEqual({ workspace: 'T0001', userId: 'U0001' });
    expect(parseStudentId('alice')).toBeUndefined();
    expect(parseStudentId('T0001.alice')).toBeUndefined();
  });
});
