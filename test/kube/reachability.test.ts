import { describe, expect, it } from 'vitest';
import { ApiException } from '../../src/kube/client-node.js';
import { isApiUnavailable } from '../../src/kube/index.js';

const answer = (code: number) =>
  new ApiException(code, 'Unknown API Status Code!', { message: 'x' }, {});

/** What undici throws when the connection could not be made. */
function refused(): Error {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {
    code: 'ECONNREFUSED',
  });
  return new TypeError('fetch failed', { cause });
}

describe('isApiUnavailable: what counts toward a host API outage', () => {
  it('counts the answers that say the server cannot serve now, whatever was asked', () => {
    for (const code of [429, 502, 503, 504])
      expect(isApiUnavailable(answer(code)), `${code}`).toBe(true);
  });

  it('does not count a refusal of this request', () => {
    for (const code of [400, 403, 404, 409, 422, 500])
      expect(isApiUnavailable(answer(code)), `${code}`).toBe(false);
    expect(isApiUnavailable(new Error('the control plane VM is not running'))).toBe(false);
    expect(isApiUnavailable('503')).toBe(false);
  });

  it('counts a connection that could not be made, and a watch answered 503', () => {
    expect(isApiUnavailable(refused())).toBe(true);
    // client-node's Watch throws a plain Error with the status beside it.
    expect(
      isApiUnavailable(Object.assign(new Error('Service Unavailable'), { statusCode: 503 })),
    ).toBe(true);
    expect(isApiUnavailable(Object.assign(new Error('Forbidden'), { statusCode: 403 }))).toBe(
      false,
    );
  });

  it('finds the reason under a caller that said what it was doing', () => {
    const wrapped = new Error('recording state warm of env abc: 503: x', { cause: answer(503) });
    expect(isApiUnavailable(wrapped)).toBe(true);
    expect(isApiUnavailable(new Error('recording state warm', { cause: answer(404) }))).toBe(false);
    expect(isApiUnavailable(new Error('listing', { cause: refused() }))).toBe(true);
  });
});
