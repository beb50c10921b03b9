/**
 * A Slack user as a labvirt student: `<workspace>.<user>`, where the
 * workspace is the Enterprise Grid org when there is one (user ids are
 * unique across an org, and a student moving between its workspaces stays
 * the same student) and the team otherwise. E.g. `T0001.U0001`.
 */

const WORKSPACE = /^[TE][A-Z0-9]{1,31}$/;
const USER = /^[UW][A-Z0-9]{1,31}$/;

export interface SlackUserRef {
  enterpriseId?: string | null;
  teamId?: string | null;
  userId: string;
}

/** The student id of a Slack user; throws on ids Slack would never send. */
export function studentIdOf(ref: SlackUserRef): string {
  const workspace = ref.enterpriseId || ref.teamId || '';
  if (!WORKSPACE.test(workspace)) throw new Error(`not a Slack team or org id: "${workspace}"`);
  if (!USER.test(ref.userId)) throw new Error(`not a Slack user id: "${ref.userId}"`);
  return `${workspace}.${ref.userId}`;
}

/** The workspace and user of a student id made by {@link studentIdOf}; undefined for others (API students). */
export function parseStudentId(student: string): { workspace: string; userId: string } | undefined {
  const dot = student.indexOf('.');
  if (dot < 0) return undefined;
  const workspace = student.slice(0, dot);
  const userId = student.slice(dot + 1);
  return WORKSPACE.test(workspace) && USER.test(userId) ? { workspace, userId } : undefined;
}
