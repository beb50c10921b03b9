import type { App, RespondArguments, SlashCommand, webApi } from '@slack/bolt';
import pLimit from 'p-limit';
import { closest } from '../config/suggest.js';
import { LabvirtError } from '../sessions/types.js';
import {
  errorAnswer,
  isOperator,
  overRateLimit,
  rateLimitMessage,
  requestIdOf,
  sessionChanged,
  startFromSlack,
  targetSession,
  type SlackDeps,
} from './context.js';
import type { FrontDoorContext } from './http.js';
import { studentIdOf } from './identity.js';
import {
  checkResultMessage,
  errorMessage,
  hintMessage,
  infoMessage,
  keyRegisteredMessage,
  labListMessage,
  poolMessage,
  startingMessage,
  statusListMessage,
  stopConfirmMessage,
  usageMessage,
  type SlackMessage,
} from './messages.js';

export const SUBCOMMANDS = [
  'list',
  'start',
  'status',
  'check',
  'hint',
  'extend',
  'stop',
  'key',
  'help',
  'pool',
] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

/** Slack escapes these three in command text. */
function unescapeSlack(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/**
 * Starts and checks running at once after their acknowledgement, per
 * replica; the rest queue in memory. Enough to keep the pool's own queues
 * busy (claims are queued work there), few enough that 200 commands at once
 * are all acknowledged within Slack's 3 s.
 */
const AFTER_ACK_CONCURRENCY = 16;

/** Answers within this, or acknowledges first and answers through `response_url`. */
const ACK_BUDGET_MS = 2_000;

function ephemeral(message: SlackMessage): RespondArguments {
  return { response_type: 'ephemeral', text: message.text, blocks: message.blocks };
}

/**
 * Registers the slash command. Slack wants an answer within 3 s: quick
 * subcommands answer in the acknowledgement; slow ones (start, check, and
 * anything that takes longer than {@link ACK_BUDGET_MS}) acknowledge at once
 * and answer through `response_url` when done.
 */
export function registerCommands(app: App, deps: SlackDeps): void {
  // The work after an acknowledgement (a start's claim, a check's scripts)
  // waits its turn here, so a class starting at once does not flood the
  // event loop and Redis ahead of the acknowledgements still to be sent.
  const afterAck = pLimit(AFTER_ACK_CONCURRENCY);
  app.command(deps.settings.command, async ({ command, ack, respond, client, context }) => {
    const answerLater = async (message: SlackMessage) => {
      try {
        await respond(ephemeral(message));
      } catch (err) {
        deps.log.warn({ err: (err as Error).message }, 'could not answer a Slack command');
      }
    };
    let student: string;
    try {
      student = studentIdOf({
        enterpriseId: command.enterprise_id,
        teamId: command.team_id,
        userId: command.user_id,
      });
    } catch (err) {
      await ack(ephemeral(errorMessage((err as Error).message)));
      return;
    }
    const counted = (context as FrontDoorContext).labvirtCommandsThisMinute;
    if (await overRateLimit(deps, student, counted)) {
      await ack(ephemeral(rateLimitMessage(deps)));
      return;
    }
    const text = unescapeSlack(command.text ?? '').trim();
    const [first = 'help', ...rest] = text.split(/\s+/).filter(Boolean);
    const sub = first.toLowerCase();
    const args = rest;
    const rawRest = text.slice(first.length).trim();

    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) {
      await ack(
        ephemeral(
          usageMessage(deps.settings.command, {
            problem: `\`${sub}\` is not a ${deps.settings.command} command.`,
            suggestion: suggestCommand(deps, sub),
          }),
        ),
      );
      return;
    }

    const run = (): Promise<SlackMessage> =>
      handle(deps, client, command, student, sub as Subcommand, args, rawRest).catch((err) =>
        errorAnswer(deps, err),
      );

    if (sub === 'start' || sub === 'check') {
      // Known to take longer than Slack waits: acknowledge first.
      const early = await earlyAnswer(deps, sub, args);
      await ack(ephemeral(early.ack));
      if (early.done) return;
      await answerLater(
        await afterAck(async () => {
          await deps.ackFirst?.quiet();
          return run();
        }),
      );
      return;
    }
    const work = run();
    const quick = await Promise.race([
      work,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), ACK_BUDGET_MS).unref()),
    ]);
    if (quick) {
      await ack(ephemeral(quick));
      return;
    }
    await ack(ephemeral(infoMessage('Working on it…')));
    await answerLater(await work);
  });
}

function suggestCommand(deps: SlackDeps, word: string): string | undefined {
  const sub = closest(word, SUBCOMMANDS);
  return sub ? `${deps.settings.command} ${sub}` : undefined;
}

/** What `start`/`check` say at once; `done` when that is the whole answer (bad input). */
async function earlyAnswer(
  deps: SlackDeps,
  sub: 'start' | 'check',
  args: string[],
): Promise<{ ack: SlackMessage; done: boolean }> {
  if (sub === 'check') return { ack: infoMessage('Checking your work…'), done: false };
  const labId = args[0];
  const labs = await deps.service.listLabs();
  if (!labId) {
    return {
      ack: usageMessage(deps.settings.command, {
        problem: `Which lab? \`${deps.settings.command} start <lab>\`; \`${deps.settings.command} list\` shows them.`,
      }),
      done: true,
    };
  }
  const lab = labs.find((l) => l.id === labId);
  if (!lab) {
    const near = closest(
      labId,
      labs.map((l) => l.id),
    );
    return {
      ack: usageMessage(deps.settings.command, {
        problem: `There is no lab \`${labId}\`.`,
        suggestion: near ? `${deps.settings.command} start ${near}` : undefined,
      }),
      done: true,
    };
  }
  return { ack: startingMessage(lab.title), done: false };
}

async function handle(
  deps: SlackDeps,
  client: webApi.WebClient,
  command: SlashCommand,
  student: string,
  sub: Subcommand,
  args: string[],
  rawRest: string,
): Promise<SlackMessage> {
  const { service, settings } = deps;
  const now = deps.now();
  switch (sub) {
    case 'help':
      return usageMessage(settings.command);
    case 'list':
      return labListMessage(await service.listLabs(), settings.command);
    case 'start': {
      const view = await startFromSlack(deps, client, {
        student,
        labId: args[0]!,
        // Slack gives each command invocation its own trigger id (without
        // one, nothing identifies a repeat: the start is a new request).
        requestId: command.trigger_id ? requestIdOf('command', command.trigger_id) : undefined,
      });
      return infoMessage(
        view.state === 'waiting'
          ? `${view.labTitle}: you are #${view.queue?.position ?? '?'} in line. Your DM shows the progress.`
          : `${view.labTitle} is starting (session ${view.id}). Your DM shows the progress.`,
      );
    }
    case 'status': {
      const views = args[0]
        ? [await service.status(args[0], student)]
        : await service.list({ student });
      return statusListMessage(views, { now, command: settings.command });
    }
    case 'check': {
      const view = await targetSession(deps, student, args[0]);
      const result = await service.check(view.id, student);
      if (result.passed) await sessionChanged(deps, view.id);
      return checkResultMessage(view, result);
    }
    case 'hint': {
      const view = await targetSession(deps, student, args[0]);
      const hint = await service.hint(view.id, student);
      await sessionChanged(deps, view.id);
      return hintMessage(hint);
    }
    case 'extend':
      return extend(deps, student, args);
    case 'stop': {
      // Stopping deletes the student's work: it takes a confirmed click.
      const view = await targetSession(deps, student, args[0]);
      return stopConfirmMessage(view);
    }
    case 'key': {
      if (!rawRest) {
        const registered = await service.registeredKey(student);
        return registered
          ? keyRegisteredMessage(registered)
          : usageMessage(settings.command, {
              problem: `Paste your public key: \`${settings.command} key ssh-ed25519 AAAA… you@laptop\` (the .pub file).`,
            });
      }
      return keyRegisteredMessage(await service.registerKey(student, rawRest));
    }
    case 'pool': {
      if (!(await isOperator(deps, client, command.user_id))) {
        return errorMessage('Only labvirt operators can see the pool.');
      }
      const failures = await deps.store.recentFailures(10);
      return poolMessage(await service.poolStatus(), failures);
    }
  }
}

/** `extend [minutes]`: one step by default, or as many steps as cover the minutes asked. */
async function extend(deps: SlackDeps, student: string, args: string[]): Promise<SlackMessage> {
  const [first, second] = args;
  const minutesArg = first && /^\d+$/.test(first) ? first : second;
  const sessionArg = first && first.startsWith('s-') ? first : undefined;
  const minutes = minutesArg === undefined ? deps.settings.extendMinutes : Number(minutesArg);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 24 * 60) {
    return usageMessage(deps.settings.command, {
      problem: `\`${deps.settings.command} extend [minutes]\`: minutes is a whole number from 1.`,
    });
  }
  const view = await targetSession(deps, student, sessionArg);
  const steps = Math.max(1, Math.ceil(minutes / deps.settings.extendMinutes));
  let latest = view;
  for (let i = 0; i < steps; i++) {
    try {
      latest = await deps.service.extend(view.id, student);
    } catch (err) {
      if (i > 0 && err instanceof LabvirtError && err.code === 'MAX_EXTENSION') break;
      throw err;
    }
  }
  await sessionChanged(deps, view.id);
  const until = latest.expiresAt ? latest.expiresAt.slice(11, 16) : '?';
  return infoMessage(`Extended: ${latest.labTitle} now ends at ${until} UTC.`);
}
