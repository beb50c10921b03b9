import type { App, webApi } from '@slack/bolt';
import { isOperator, type SlackDeps } from './context.js';
import { studentIdOf, type SlackUserRef } from './identity.js';
import { homeView, type OperatorPanel } from './messages.js';

const RECENT_LABS = 5;

/**
 * Renders and publishes one user's Home tab: their live sessions (with the
 * same buttons as the DM), their recent labs, the catalogue; operators also
 * get the pools, the line and recent failures. Only operators ever get the
 * operator panel: it is decided here, per user, not by what they click.
 */
export async function publishHome(
  deps: SlackDeps,
  client: webApi.WebClient,
  user: SlackUserRef,
): Promise<void> {
  const student = studentIdOf(user);
  const [current, recent, labs, operator] = await Promise.all([
    deps.service.list({ student }),
    deps.service.recentSessions(student, RECENT_LABS + 3),
    deps.service.listLabs(),
    isOperator(deps, client, user.userId),
  ]);
  let panel: OperatorPanel | undefined;
  if (operator) {
    panel = {
      pool: await deps.service.poolStatus(),
      failures: await deps.store.recentFailures(10),
    };
  }
  const view = homeView({
    now: deps.now(),
    current,
    recent: recent.filter((s) => s.state === 'ended').slice(0, RECENT_LABS),
    labs,
    operator: panel,
  });
  await client.views.publish({ user_id: user.userId, view });
}

export function registerHome(app: App, deps: SlackDeps): void {
  app.event('app_home_opened', async ({ event, body, client }) => {
    if (event.tab !== 'home') return;
    const envelope = body as { enterprise_id?: string; team_id?: string };
    try {
      await publishHome(deps, client, {
        enterpriseId: envelope.enterprise_id,
        teamId: envelope.team_id,
        userId: event.user,
      });
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'could not publish the App Home');
    }
  });
}
