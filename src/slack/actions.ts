import type { App, BlockAction, ButtonAction, webApi } from '@slack/bolt';
import type { RespondFn } from '@slack/bolt';
import {
  errorAnswer,
  isRepeatClick,
  overRateLimit,
  rateLimitMessage,
  requestIdOf,
  sessionChanged,
  startFromSlack,
  targetSession,
  type SlackDeps,
} from './context.js';
import { publishHome } from './home.js';
import { studentIdOf, type SlackUserRef } from './identity.js';
import {
  ACTION_IDS,
  checkResultMessage,
  hintMessage,
  infoMessage,
  type SlackMessage,
} from './messages.js';

type ActionName = keyof typeof ACTION_IDS;

interface ClickContext {
  deps: SlackDeps;
  client: webApi.WebClient;
  body: BlockAction<ButtonAction>;
  user: SlackUserRef;
  student: string;
  value: string;
}

/** Where a button sits: a message (channel + ts) or a view (id + hash, which changes at each publish). */
function placeOf(body: BlockAction<ButtonAction>): string[] {
  if (body.view) return ['view', body.view.id, body.view.hash ?? ''];
  const container = body.container as { channel_id?: string; message_ts?: string };
  return [
    'message',
    body.channel?.id ?? container.channel_id ?? '',
    body.message?.ts ?? container.message_ts ?? '',
  ];
}

async function reply(ctx: ClickContext, respond: RespondFn, message: SlackMessage): Promise<void> {
  try {
    if (ctx.body.response_url) {
      await respond({
        response_type: 'ephemeral',
        replace_original: false,
        text: message.text,
        blocks: message.blocks,
      });
    } else {
      // Home buttons have no response_url: answer in the app's DM.
      await ctx.client.chat.postMessage({
        channel: ctx.user.userId,
        text: message.text,
        blocks: message.blocks,
      });
    }
  } catch (err) {
    ctx.deps.log.warn({ err: (err as Error).message }, 'could not answer a Slack button');
  }
}

const HANDLERS: Record<ActionName, (ctx: ClickContext) => Promise<SlackMessage | undefined>> = {
  async check({ deps, student, value }) {
    const view = await targetSession(deps, student, value);
    const result = await deps.service.check(view.id, student);
    if (result.passed) await sessionChanged(deps, view.id);
    return checkResultMessage(view, result);
  },
  async hint({ deps, student, value }) {
    const view = await targetSession(deps, student, value);
    const hint = await deps.service.hint(view.id, student);
    await sessionChanged(deps, view.id);
    return hintMessage(hint);
  },
  async extend({ deps, student, value }) {
    const view = await deps.service.extend(value, student);
    await sessionChanged(deps, view.id);
    return undefined;
  },
  async stop({ deps, student, value }) {
    // Slack showed the confirmation dialog before sending this click.
    const view = await deps.service.stop(value, student);
    await sessionChanged(deps, view.id);
    return undefined;
  },
  async start({ deps, client, body, student, value }) {
    const view = await startFromSlack(deps, client, {
      student,
      labId: value,
      // The same button on the same message or view, clicked by the same
      // student, is the same request however often Slack delivers it.
      requestId: requestIdOf('button', ...placeOf(body), body.user.id, value),
    });
    return view.state === 'waiting'
      ? infoMessage(
          `${view.labTitle}: you are #${view.queue?.position ?? '?'} in line. Your DM shows the progress.`,
        )
      : undefined;
  },
};

/**
 * The buttons of the status message, the Home tab and the catalogue. Each
 * click is acknowledged at once; the work follows, and its answer comes as
 * an ephemeral message (or in the DM for Home buttons). The status message
 * itself is edited by the delivery side.
 */
export function registerActions(app: App, deps: SlackDeps): void {
  const names = new Map(
    (Object.entries(ACTION_IDS) as [ActionName, string][]).map(([name, id]) => [id, name]),
  );
  // One listener for every button: Bolt runs each registered listener's
  // middleware for every request (a command included), so one chain here
  // instead of one per button is less work on the way to each ack.
  const anyButton = new RegExp(`^(?:${[...names.keys()].join('|')})$`);
  app.action<BlockAction<ButtonAction>>(
    { type: 'block_actions', action_id: anyButton },
    async ({ ack, body, action, client, respond }) => {
      const name = names.get(action.action_id)!;
      await ack();
      // A class clicking at once: every click is acknowledged before any works.
      await deps.ackFirst?.quiet();
      let user: SlackUserRef;
      let student: string;
      try {
        user = {
          enterpriseId: body.enterprise?.id,
          teamId: body.user.team_id ?? body.team?.id,
          userId: body.user.id,
        };
        student = studentIdOf(user);
      } catch (err) {
        deps.log.warn({ err: (err as Error).message }, 'Slack click from an unknown user');
        return;
      }
      const ctx: ClickContext = { deps, client, body, user, student, value: action.value ?? '' };
      if (await isRepeatClick(deps, name, ...placeOf(body), body.user.id, ctx.value)) return;
      if (await overRateLimit(deps, student)) {
        await reply(ctx, respond, rateLimitMessage(deps));
        return;
      }
      let answer: SlackMessage | undefined;
      try {
        answer = await HANDLERS[name](ctx);
      } catch (err) {
        answer = errorAnswer(deps, err);
      }
      if (answer) await reply(ctx, respond, answer);
      if (body.view?.type === 'home') {
        await publishHome(deps, client, user).catch((err: unknown) =>
          deps.log.warn({ err: (err as Error).message }, 'could not refresh the App Home'),
        );
      }
    },
  );
}
