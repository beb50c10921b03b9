import type { IncomingHttpHeaders } from 'node:http';
import type { RequestAttributes, UserInfo } from './api.js';
import { ApiError } from './store.js';

const SA_PREFIX = 'system:serviceaccount:';

/** What the caller asks to act as, and the `impersonate` check each part needs. */
type Wanted = Pick<
  RequestAttributes,
  'apiGroup' | 'resource' | 'subresource' | 'namespace' | 'name'
>;

function values(headers: IncomingHttpHeaders, name: string): string[] {
  const v = headers[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * The API server's impersonation filter (kubectl `--as`, `--as-group`,
 * `--as-uid`): with `Impersonate-*` headers the request runs as the named
 * user, provided the caller may `impersonate` that user (a ServiceAccount
 * name is checked as `serviceaccounts` in its namespace), each group, the
 * uid and each extra; otherwise 403 naming what it may not impersonate.
 * Without groups, a ServiceAccount gets its own (`system:serviceaccounts`,
 * `system:serviceaccounts:<ns>`); every impersonated user but
 * `system:anonymous` is in `system:authenticated`.
 */
export function impersonate(
  headers: IncomingHttpHeaders,
  caller: UserInfo,
  authorize: (attrs: RequestAttributes) => void,
): UserInfo {
  const username = values(headers, 'impersonate-user')[0];
  const groups = values(headers, 'impersonate-group');
  const uid = values(headers, 'impersonate-uid')[0];
  const extras = Object.keys(headers)
    .filter((h) => h.startsWith('impersonate-extra-'))
    .flatMap((h) =>
      values(headers, h).map((v) => ({ key: h.slice('impersonate-extra-'.length), value: v })),
    );
  if (username === undefined) {
    if (groups.length > 0 || uid !== undefined || extras.length > 0)
      throw new ApiError(
        500,
        'InternalError',
        `requested ${[...groups, ...(uid ? [uid] : [])].join(', ')} without impersonating a user`,
      );
    return caller;
  }

  const wanted: Wanted[] = [];
  const sa = username.startsWith(SA_PREFIX) ? username.slice(SA_PREFIX.length).split(':') : [];
  if (sa.length === 2 && sa[0] && sa[1])
    wanted.push({
      apiGroup: '',
      resource: 'serviceaccounts',
      subresource: '',
      namespace: sa[0],
      name: sa[1],
    });
  else
    wanted.push({
      apiGroup: '',
      resource: 'users',
      subresource: '',
      namespace: '',
      name: username,
    });
  for (const g of groups)
    wanted.push({ apiGroup: '', resource: 'groups', subresource: '', namespace: '', name: g });
  if (uid !== undefined)
    wanted.push({
      apiGroup: 'authentication.k8s.io',
      resource: 'uids',
      subresource: '',
      namespace: '',
      name: uid,
    });
  for (const e of extras)
    wanted.push({
      apiGroup: 'authentication.k8s.io',
      resource: 'userextras',
      subresource: e.key,
      namespace: '',
      name: e.value,
    });
  for (const w of wanted)
    authorize({
      user: caller,
      verb: 'impersonate',
      resourceRequest: true,
      path: '',
      apiVersion: 'v1',
      ...w,
    });

  const own =
    groups.length > 0
      ? groups
      : sa.length === 2
        ? ['system:serviceaccounts', `system:serviceaccounts:${sa[0]}`]
        : [];
  const implicit =
    username === 'system:anonymous' ? 'system:unauthenticated' : 'system:authenticated';
  return {
    username,
    ...(uid !== undefined ? { uid } : {}),
    groups: own.includes(implicit) ? own : [...own, implicit],
  };
}
