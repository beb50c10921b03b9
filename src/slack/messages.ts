import type { types } from '@slack/bolt';
import type {
  CheckResult,
  HintResult,
  LabSummary,
  PoolStatus,
  RegisteredKey,
  SessionView,
} from '../sessions/types.js';

/**
 * Every message labvirt shows in Slack, as Block Kit. Pure functions of what
 * the sessions service returns (and `now`, so that tests and the checked-in
 * renderings under docs/slack/ are deterministic); nothing here talks to Slack.
 */

export type KnownBlock = types.KnownBlock;
export type HomeView = types.HomeView;

export interface SlackMessage {
  /** Notification and screen-reader text; Slack shows it where blocks cannot be. */
  text: string;
  blocks: KnownBlock[];
}

export interface RenderOptions {
  /** Milliseconds since the epoch: the moment the message is rendered for. */
  now: number;
}

/** The `action_id`s of labvirt's buttons; the value is a session id (or a lab id for Start). */
export const ACTION_IDS = {
  check: 'lab_check',
  hint: 'lab_hint',
  extend: 'lab_extend',
  stop: 'lab_stop',
  start: 'lab_start',
} as const;

// Slack limits (https://docs.slack.dev/reference/block-kit/blocks/section-block).
const SECTION_TEXT_MAX = 3000;
const HOME_BLOCKS_MAX = 100;

/**
 * Escapes text for mrkdwn. Anything a student or a script controls (FAIL
 * lines, key comments) goes through this, so it cannot mention `@channel` or
 * forge links.
 */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(text: string, max = SECTION_TEXT_MAX): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Text in a code block, with the fence itself kept out of the content. */
function codeBlock(text: string, max = SECTION_TEXT_MAX - 8): string {
  return '```' + clip(escapeMrkdwn(text).replace(/```/g, "'''"), max) + '```';
}

function section(text: string): KnownBlock {
  return { type: 'section', text: { type: 'mrkdwn', text: clip(text) } };
}

function context(...texts: string[]): KnownBlock {
  return {
    type: 'context',
    elements: texts.map((text) => ({ type: 'mrkdwn' as const, text: clip(text) })),
  };
}

function plain(text: string) {
  return { type: 'plain_text' as const, text, emoji: true };
}

/** A time Slack shows in the reader's own timezone, with a UTC fallback. */
function clock(iso: string): string {
  const date = new Date(iso);
  const fallback = `${date.toISOString().slice(11, 16)} UTC`;
  return `<!date^${Math.floor(date.getTime() / 1000)}^{time}|${fallback}>`;
}

/** `1 h 05 min`, `12 min`, `less than a minute`. */
export function formatDuration(ms: number): string {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return 'less than a minute';
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function labLine(view: SessionView): string {
  return `*${escapeMrkdwn(view.labTitle)}* · \`${view.labId}\` · session \`${view.id}\``;
}

// ---- buttons ---------------------------------------------------------------

function button(
  actionId: string,
  text: string,
  value: string,
  extra: Partial<types.Button> = {},
): types.Button {
  return { type: 'button', action_id: actionId, text: plain(text), value, ...extra };
}

/** Stop asks first: it ends the session and deletes the student's cluster. */
function stopButton(view: SessionView): types.Button {
  const waiting = view.state === 'waiting';
  return button(ACTION_IDS.stop, waiting ? 'Leave the line' : 'Stop', view.id, {
    style: 'danger',
    confirm: {
      title: plain(waiting ? 'Leave the line?' : 'Stop this lab?'),
      text: {
        type: 'mrkdwn',
        text: waiting
          ? `You will lose your place in the line for *${escapeMrkdwn(view.labTitle)}*.`
          : `Your cluster for *${escapeMrkdwn(view.labTitle)}* is deleted, with everything you did on it.`,
      },
      confirm: plain(waiting ? 'Leave' : 'Stop'),
      deny: plain('Keep going'),
      style: 'danger',
    },
  });
}

function canExtend(view: SessionView): boolean {
  return (
    view.expiresAt !== undefined &&
    view.maxExpiresAt !== undefined &&
    Date.parse(view.maxExpiresAt) > Date.parse(view.expiresAt)
  );
}

function sessionButtons(view: SessionView): KnownBlock | undefined {
  if (view.state === 'ended') return undefined;
  const elements: types.Button[] = [];
  if (view.state === 'active') {
    elements.push(button(ACTION_IDS.check, 'Check', view.id, { style: 'primary' }));
    if (view.hintsUsed < view.hintsTotal) elements.push(button(ACTION_IDS.hint, 'Hint', view.id));
    if (canExtend(view)) elements.push(button(ACTION_IDS.extend, 'Extend', view.id));
  }
  elements.push(stopButton(view));
  return { type: 'actions', block_id: `session-${view.id}`, elements };
}

// ---- the session status message --------------------------------------------

/** A one-line summary of a session's result: time taken, hints, points. */
function resultLine(view: SessionView): string {
  const parts: string[] = [];
  if (view.solvedAt && view.readyAt) {
    parts.push(
      `time taken ${formatDuration(Date.parse(view.solvedAt) - Date.parse(view.readyAt))}`,
    );
  }
  parts.push(`${view.hintsUsed} of ${plural(view.hintsTotal, 'hint')} used`);
  if (view.score !== undefined && view.maxScore !== undefined) {
    parts.push(`${view.score}/${view.maxScore} points`);
  }
  return parts.join(' · ');
}

function endedHeadline(view: SessionView): string {
  if (view.solvedAt) return `:trophy: *Solved!* ${resultLine(view)}`;
  switch (view.endedReason) {
    case 'expired':
      return ':alarm_clock: *Time is up:* the session expired and its cluster is being deleted.';
    case 'failed':
      return `:x: *This session failed:* ${escapeMrkdwn(view.endedDetail ?? 'labvirt could not prepare an environment for it')}. Start the lab again to get a fresh one.`;
    case 'cancelled':
      return ':no_entry_sign: *Cancelled* before it started.';
    default:
      return ':white_circle: *Stopped.* The cluster is being deleted.';
  }
}

function timeLeftLine(view: SessionView, now: number): string {
  if (!view.expiresAt) return '';
  const left = Date.parse(view.expiresAt) - now;
  return `:stopwatch: ${formatDuration(left)} left (until ${clock(view.expiresAt)})`;
}

/**
 * The one DM status message of a session, edited in place at each step:
 * in line, preparing, active, solved, and the end (expired, stopped, failed).
 */
export function sessionStatusMessage(view: SessionView, opts: RenderOptions): SlackMessage {
  const blocks: KnownBlock[] = [section(labLine(view))];
  let text: string;
  switch (view.state) {
    case 'waiting': {
      const position = view.queue?.position ?? 0;
      const estimate = view.queue?.estimateSeconds ?? 0;
      text = `${view.labTitle}: you are #${position} in line`;
      blocks.push(
        section(
          `:hourglass_flowing_sand: All \`${view.flavor}\` clusters are taken: you are *#${position}* in line` +
            (estimate > 0 ? `, about ${formatDuration(estimate * 1000)} to wait.` : '.'),
        ),
        context('This message changes as soon as a cluster is yours.'),
      );
      break;
    }
    case 'claimed':
    case 'preparing':
      text = `${view.labTitle}: preparing your cluster`;
      blocks.push(
        section(
          `:gear: Preparing your \`${view.flavor}\` cluster and setting up the lab… usually under a minute.`,
        ),
      );
      if (view.slow) {
        text = `${view.labTitle}: ${view.slow.message}`;
        blocks.push(
          section(
            `:hourglass_flowing_sand: *${view.slow.message.charAt(0).toUpperCase()}${view.slow.message.slice(1)}.*`,
          ),
          context('Your cluster is kept for you: setup goes on with more time.'),
        );
      }
      break;
    case 'active': {
      const c = view.connection;
      text = view.solvedAt ? `${view.labTitle}: solved` : `${view.labTitle}: your cluster is ready`;
      if (view.solvedAt) blocks.push(section(`:trophy: *Solved!* ${resultLine(view)}`));
      else blocks.push(section(':large_green_circle: *Your cluster is ready.*'));
      const restarts = restartLines(view);
      if (restarts) blocks.push(section(restarts));
      if (view.labDescription) blocks.push(section(escapeMrkdwn(view.labDescription)));
      if (c) {
        blocks.push(section(`*Connect:*\n${codeBlock(c.command)}`));
        blocks.push(
          context(
            `Nodes: ${c.nodes.map((n) => `\`${escapeMrkdwn(n)}\``).join(', ')} (\`ssh <node>\` from the control plane)`,
            'With a key you registered (`/lab key`), use your own private key in `-i`.',
          ),
        );
      }
      const ports = portLines(view);
      if (ports) blocks.push(section(ports));
      blocks.push(
        context(
          timeLeftLine(view, opts.now),
          `:bulb: ${view.hintsUsed} of ${plural(view.hintsTotal, 'hint')} used`,
        ),
      );
      break;
    }
    case 'ended':
      text = `${view.labTitle}: ${view.solvedAt ? 'solved' : (view.endedReason ?? 'ended')}`;
      blocks.push(section(endedHeadline(view)));
      if (view.readyAt && view.endedAt) {
        blocks.push(
          context(
            `Time on the lab: ${formatDuration(Date.parse(view.endedAt) - Date.parse(view.readyAt))}`,
          ),
        );
      }
      break;
  }
  const buttons = sessionButtons(view);
  if (buttons) blocks.push(buttons);
  return { text, blocks };
}

/**
 * Nodes whose VM came back fresh during the session (a host drain, a crash):
 * said plainly, so the student does not hunt for work that is gone.
 */
function restartLines(view: SessionView): string | undefined {
  const restarts = view.nodeRestarts ?? [];
  if (restarts.length === 0) return undefined;
  const lines = restarts.map(
    (r) =>
      `:warning: *${escapeMrkdwn(r.node)} restarted at ${clock(r.at)}:* its disk was reset, your changes on it are gone.`,
  );
  lines.push('The session goes on. To get the lab as it was set up, stop it and start it again.');
  return lines.join('\n');
}

/**
 * The apps the student published from their cluster (NodePort sync), and the
 * ports that were not published with why, so nothing is silently dropped.
 */
function portLines(view: SessionView): string | undefined {
  const published = view.ports?.published ?? [];
  const refused = view.ports?.refused ?? [];
  if (published.length === 0 && refused.length === 0) return undefined;
  const lines = published.map(
    (p) =>
      `\`${escapeMrkdwn(p.service)}:${p.port}\` → \`${escapeMrkdwn(p.address)}\`` +
      (p.protocol === 'TCP' ? '' : ` (${p.protocol})`),
  );
  for (const r of refused) lines.push(`:no_entry: ${escapeMrkdwn(r.message)}`);
  return `*Your published apps:*\n${lines.join('\n')}`;
}

/** Sent a few minutes before expiry, with an Extend button when the session may still grow. */
export function expiryWarningMessage(view: SessionView, opts: RenderOptions): SlackMessage {
  const left = view.expiresAt ? formatDuration(Date.parse(view.expiresAt) - opts.now) : 'minutes';
  const extendable = canExtend(view);
  const blocks: KnownBlock[] = [
    section(
      `:warning: *${escapeMrkdwn(view.labTitle)}* ends in *${left}*` +
        (view.expiresAt ? ` (at ${clock(view.expiresAt)})` : '') +
        '. Its cluster is deleted then.' +
        (extendable ? '' : ' It has reached the longest time a session may last.'),
    ),
  ];
  if (extendable) {
    blocks.push({
      type: 'actions',
      block_id: `warning-${view.id}`,
      elements: [button(ACTION_IDS.extend, 'Extend', view.id, { style: 'primary' })],
    });
  }
  return { text: `${view.labTitle} ends in ${left}`, blocks };
}

/** The last message of a session, when it ends (for whatever reason). */
export function sessionEndedMessage(view: SessionView, opts: RenderOptions): SlackMessage {
  void opts;
  const blocks: KnownBlock[] = [section(labLine(view)), section(endedHeadline(view))];
  const facts: string[] = [];
  if (view.readyAt && view.endedAt) {
    facts.push(
      `Time on the lab: ${formatDuration(Date.parse(view.endedAt) - Date.parse(view.readyAt))}`,
    );
  }
  if (!view.solvedAt && view.readyAt) facts.push(resultLine(view));
  if (facts.length > 0) blocks.push(context(...facts));
  return {
    text: `${view.labTitle} has ended${view.solvedAt ? ': solved' : ''}`,
    blocks,
  };
}

// ---- answers to commands and buttons ---------------------------------------

/** What `check` found: each check with its points and the FAIL lines it printed. */
export function checkResultMessage(view: SessionView, result: CheckResult): SlackMessage {
  const blocks: KnownBlock[] = [
    section(
      result.passed
        ? `:white_check_mark: *All checks pass* — ${result.score}/${result.maxScore} points. Well done!`
        : `:x: *Not yet* — ${result.score}/${result.maxScore} points.`,
    ),
  ];
  for (const check of result.checks) {
    const head = `${check.passed ? ':white_check_mark:' : ':x:'} *${escapeMrkdwn(check.name)}* (${plural(check.points, 'point')}) — ${escapeMrkdwn(check.description)}`;
    const shown = check.passed ? check.messages : check.messages.map((m) => `FAIL: ${m}`);
    const lines = shown.length > 0 ? `\n${codeBlock(shown.join('\n'))}` : '';
    blocks.push(section(head + lines));
  }
  blocks.push(context(`${escapeMrkdwn(view.labTitle)} · session \`${view.id}\``));
  return {
    text: result.passed
      ? `All checks pass: ${result.score}/${result.maxScore} points`
      : `Not yet: ${result.score}/${result.maxScore} points`,
    blocks,
  };
}

export function hintMessage(hint: HintResult): SlackMessage {
  const left = hint.total - hint.index;
  return {
    text: `Hint ${hint.index} of ${hint.total}`,
    blocks: [
      section(`:bulb: *Hint ${hint.index} of ${hint.total}*\n${escapeMrkdwn(hint.text)}`),
      context(left > 0 ? `${plural(left, 'hint')} left.` : 'That was the last hint.'),
    ],
  };
}

export function startingMessage(labTitle: string): SlackMessage {
  const text = `Starting *${escapeMrkdwn(labTitle)}*… I'll DM you its status.`;
  return { text, blocks: [section(`:rocket: ${text}`)] };
}

export function labListMessage(labs: LabSummary[], command: string): SlackMessage {
  const blocks: KnownBlock[] = [section(`*Labs you can start* (\`${command} start <lab>\`)`)];
  for (const lab of labs) blocks.push(labBlock(lab));
  if (labs.length === 0) blocks.push(section('No labs are available right now.'));
  return { text: `${labs.length} labs`, blocks };
}

function labBlock(lab: LabSummary): KnownBlock {
  return {
    type: 'section',
    text: {
      type: 'mrkdwn',
      text: `*${escapeMrkdwn(lab.title)}* · \`${lab.id}\`\n${lab.difficulty} · ${lab.flavor} · ${lab.timeLimitMinutes} min`,
    },
    accessory: button(ACTION_IDS.start, 'Start', lab.id),
  };
}

export function keyRegisteredMessage(key: RegisteredKey): SlackMessage {
  const text = `Key registered: ${key.fingerprint}. Labs you start from now on use it; no private key is sent.`;
  return {
    text,
    blocks: [
      section(
        `:key: *Key registered:* \`${key.fingerprint}\`\nLabs you start from now on use it: connect with your own private key; labvirt sends none.`,
      ),
    ],
  };
}

/** The message that accompanies a private key handed out as a file. */
export function keyFileComment(view: SessionView): string {
  return (
    `Private key for ${view.labTitle} (session ${view.id}). Save it as labvirt-${view.id}.key, ` +
    `\`chmod 600 labvirt-${view.id}.key\`, then use the connect command. It is sent once; ` +
    `\`/lab key <your public key>\` registers your own key instead.`
  );
}

/** The private key as a one-time download link. */
export function keyLinkMessage(view: SessionView, url: string, minutes: number): SlackMessage {
  const text = `Download the private key for ${view.labTitle}: ${url} (works once, for ${minutes} min)`;
  return {
    text,
    blocks: [
      section(
        `:key: <${url}|Download your private key> for *${escapeMrkdwn(view.labTitle)}* — it works *once*, within ${minutes} min. Save it as \`labvirt-${view.id}.key\` and \`chmod 600 labvirt-${view.id}.key\`.`,
      ),
      context('`/lab key <your public key>` registers your own key, so no private key is sent.'),
    ],
  };
}

export function errorMessage(text: string): SlackMessage {
  return { text, blocks: [section(`:warning: ${escapeMrkdwn(text)}`)] };
}

export function infoMessage(text: string): SlackMessage {
  return { text, blocks: [section(escapeMrkdwn(text))] };
}

export const SUBCOMMAND_HELP: readonly [string, string][] = [
  ['list', 'the labs you can start'],
  ['start <lab>', 'start a lab (you get a DM with its status)'],
  ['status', 'your current session'],
  ['check', 'grade your work'],
  ['hint', 'the next hint'],
  ['extend', 'more time'],
  ['stop', 'end your session and delete its cluster'],
  ['key <ssh public key>', 'register your own SSH key (e.g. ~/.ssh/id_ed25519.pub)'],
  ['help', 'this help'],
];

/** Help, optionally preceded by what went wrong and a suggestion. */
export function usageMessage(
  command: string,
  opts: { problem?: string; suggestion?: string } = {},
): SlackMessage {
  const lines = SUBCOMMAND_HELP.map(([sub, what]) => `\`${command} ${sub}\` — ${what}`);
  const blocks: KnownBlock[] = [];
  if (opts.problem) {
    blocks.push(
      section(
        `:warning: ${escapeMrkdwn(opts.problem)}` +
          (opts.suggestion ? ` Did you mean \`${escapeMrkdwn(opts.suggestion)}\`?` : ''),
      ),
    );
  }
  blocks.push(section(lines.join('\n')));
  const text = opts.problem
    ? `${opts.problem}${opts.suggestion ? ` Did you mean "${opts.suggestion}"?` : ''}`
    : `Usage: ${command} list|start|status|check|hint|extend|stop|key|help`;
  return { text, blocks };
}

/** `status` as an ephemeral answer: the same rendering as the DM. */
export function statusListMessage(
  views: SessionView[],
  opts: RenderOptions & { command: string },
): SlackMessage {
  if (views.length === 0) {
    return infoMessage(
      `You have no lab running. \`${opts.command} list\` shows what you can start.`,
    );
  }
  const blocks = views.flatMap((v) => sessionStatusMessage(v, opts).blocks);
  return { text: `${plural(views.length, 'session')} running`, blocks };
}

// ---- App Home ---------------------------------------------------------------

export interface FailureNote {
  /** Milliseconds since the epoch. */
  at: number;
  what: string;
}

export interface OperatorPanel {
  pool: PoolStatus;
  /** Recent failures, newest first (env failures and failed sessions). */
  failures: FailureNote[];
}

export interface HomeInput extends RenderOptions {
  current: SessionView[];
  /** Recent sessions that have ended, newest first. */
  recent: SessionView[];
  labs: LabSummary[];
  operator?: OperatorPanel;
}

function recentLine(view: SessionView): string {
  const result = view.solvedAt
    ? `:trophy: solved in ${view.readyAt ? formatDuration(Date.parse(view.solvedAt) - Date.parse(view.readyAt)) : '?'}` +
      (view.score !== undefined ? `, ${view.score}/${view.maxScore} points` : '')
    : view.endedReason === 'expired'
      ? ':alarm_clock: expired'
      : view.endedReason === 'failed'
        ? ':x: failed'
        : ':white_circle: stopped';
  const taken =
    view.readyAt && view.endedAt
      ? ` · ${formatDuration(Date.parse(view.endedAt) - Date.parse(view.readyAt))} on it`
      : '';
  return `• *${escapeMrkdwn(view.labTitle)}* — ${result}${taken}`;
}

function poolBlocks(pool: PoolStatus, failures: FailureNote[]): KnownBlock[] {
  const blocks: KnownBlock[] = [{ type: 'header', text: plain('Operator: pools') }];
  for (const f of pool.flavors) {
    const inUse = f.counts.claimed + f.counts.preparing + f.counts.active;
    const provisioning = f.counts.provisioning + f.counts.booting;
    blocks.push(
      section(
        `*${f.flavor}* — ${f.counts.warm} warm / ${provisioning} provisioning / ${inUse} in use / target ${f.targetWarm} (max ${f.maxTotal})` +
          `\n:busts_in_silhouette: ${f.waiting} waiting in line` +
          (f.capacityBlocked
            ? `\n:no_entry: capacity blocked: ${escapeMrkdwn(f.capacityReason ?? 'the host cluster is full')}`
            : ''),
      ),
    );
  }
  blocks.push({ type: 'header', text: plain('Operator: recent failures') });
  blocks.push(
    section(
      failures.length === 0
        ? 'None recently.'
        : failures
            .slice(0, 10)
            .map((f) => `• ${clock(new Date(f.at).toISOString())} ${escapeMrkdwn(f.what)}`)
            .join('\n'),
    ),
  );
  return blocks;
}

/** `/lab pool` for operators: every flavor's pool, the line, recent failures. */
export function poolMessage(pool: PoolStatus, failures: FailureNote[]): SlackMessage {
  const warm = pool.flavors.reduce((n, f) => n + f.counts.warm, 0);
  const waiting = pool.flavors.reduce((n, f) => n + f.waiting, 0);
  return { text: `Pool: ${warm} warm, ${waiting} waiting`, blocks: poolBlocks(pool, failures) };
}

/** `/lab stop` answers with this: stopping takes a confirmed click. */
export function stopConfirmMessage(view: SessionView): SlackMessage {
  return {
    text: `Stop ${view.labTitle}?`,
    blocks: [
      section(
        `Stop *${escapeMrkdwn(view.labTitle)}* (session \`${view.id}\`)? Its cluster is deleted.`,
      ),
      { type: 'actions', block_id: `stop-${view.id}`, elements: [stopButton(view)] },
    ],
  };
}

/** The App Home tab: the student's session, their recent labs, the catalogue; operators see more. */
export function homeView(input: HomeInput): HomeView {
  const blocks: KnownBlock[] = [{ type: 'header', text: plain('Your lab') }];
  if (input.current.length === 0) {
    blocks.push(section('No lab running. Pick one below.'));
  }
  for (const view of input.current) {
    blocks.push(...sessionStatusMessage(view, { now: input.now }).blocks);
  }
  if (input.recent.length > 0) {
    blocks.push({ type: 'divider' }, { type: 'header', text: plain('Recent labs') });
    blocks.push(section(input.recent.map(recentLine).join('\n')));
  }
  const operator: KnownBlock[] = input.operator
    ? [{ type: 'divider' }, ...poolBlocks(input.operator.pool, input.operator.failures)]
    : [];
  blocks.push({ type: 'divider' }, { type: 'header', text: plain('Labs') });
  // Slack refuses a Home view of more than 100 blocks: the catalogue gives way first.
  const room = HOME_BLOCKS_MAX - blocks.length - operator.length - 1;
  const shown = input.labs.slice(0, Math.max(0, room));
  for (const lab of shown) blocks.push(labBlock(lab));
  if (shown.length < input.labs.length) {
    blocks.push(context(`${input.labs.length - shown.length} more: \`/lab list\` shows them all.`));
  }
  blocks.push(...operator);
  return { type: 'home', blocks };
}
