import { envNamespace } from '../../src/kube/index.js';
import { envNodes, nodesOfFlavor } from '../../src/pool/nodes.js';
import { labScripts, runSteps } from '../../src/sessions/scripts.js';
import type { LabvirtHandle } from '../../src/app/index.js';
import type { SessionView } from '../../src/sessions/types.js';
import type { Notifier } from '../../src/slack/index.js';
import type { FakeSlack, SlackCall, SlackMessage } from '../helpers/fake-slack.js';

/** What the student does over SSH to fix the lab: the lab's own solve scripts, in their env. */
export async function solveLab(labvirt: LabvirtHandle, sessionId: string): Promise<void> {
  const ctx = labvirt.context;
  const session = await labvirt.service.status(sessionId);
  const lab = ctx.labs.get(session.labId)!;
  const nodes = await envNodes(
    ctx.cluster,
    envNamespace(ctx.config, session.envId!),
    nodesOfFlavor(ctx.config, session.flavor),
  );
  await runSteps(
    { executor: ctx.executor, envId: session.envId!, nodes, env: { LAB_ID: lab.id } },
    labScripts(lab, ctx.config.labScripts).solve,
  );
}

/** All the text a message shows (fallback text and every block's text), for assertions. */
export function shownText(message: { text?: string; blocks?: unknown[] }): string {
  return [message.text ?? '', JSON.stringify(message.blocks ?? [])].join('\n');
}

/** The student's DM status message: the first message posted to them. */
export function statusMessageOf(fake: FakeSlack, userId: string): SlackMessage | undefined {
  return fake.messagesTo(userId)[0];
}

/**
 * Every Slack call that touched the student's DM: the posts to them and the
 * updates of any of their messages, in order.
 */
export function dmCallsOf(fake: FakeSlack, userId: string): SlackCall[] {
  const channel = fake.dmChannelOf(userId);
  return fake.calls.filter(
    (c) =>
      c.status === 200 &&
      ((c.method === 'chat.postMessage' &&
        (c.args.channel === userId || c.args.channel === channel)) ||
        (c.method === 'chat.update' && c.args.channel === channel)),
  );
}

/**
 * Starts a session the way the Slack front end does: through the service,
 * then marked as the Slack user's (only such sessions are DMed).
 */
export async function startAsSlackUser(
  service: Pick<LabvirtHandle['service'], 'start'>,
  notifier: Pick<Notifier, 'startedFromSlack'>,
  userId: string,
  labId: string,
  requestId?: string,
): Promise<SessionView> {
  const view = await service.start({ student: `T0001.${userId}`, labId, requestId });
  await notifier.startedFromSlack(view.id, userId);
  return view;
}
