import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { it, vi } from 'vitest';
import { startSim, type SimHandle, type SimOptions } from '../../src/sim/index.js';

/**
 * The conformance suite runs the same client-level tests against the sim (default) and, when
 * LABVIRT_E2E_KUBECONFIG is set, against a real cluster, so the sim's fidelity can be checked
 * on real KubeVirt.
 */
export const onRealCluster: boolean = Boolean(process.env.LABVIRT_E2E_KUBECONFIG);

// A real cluster pulls images and boots VMs in minutes, not the sim's milliseconds; vitest reads
// these when a file defines its tests, which happens after this module is imported.
if (onRealCluster) vi.setConfig({ testTimeout: 600_000, hookTimeout: 600_000 });

export interface ConformanceTarget {
  kind: 'sim' | 'real';
  /** Loaded from the sim's kubeconfig or LABVIRT_E2E_KUBECONFIG (+ optional LABVIRT_E2E_CONTEXT). */
  kc: KubeConfig;
  /** Only on the sim. */
  sim?: SimHandle;
  /** Creates a namespace named `<run prefix>-<base>` (unique per run, label labvirt.io/conformance=<run id>), remembered for cleanup; returns its name. */
  createNamespace(base: string, labels?: Record<string, string>): Promise<string>;
  /** Polls fn until true or the deadline (default 10 s on the sim, 120 s on a real cluster). */
  until(fn: () => Promise<boolean>, what: string, timeoutMs?: number): Promise<void>;
  /** Deletes what createNamespace made (and waits a bounded time), stops the sim. */
  stop(): Promise<void>;
}

const conformanceLabel = 'labvirt.io/conformance';

/** `it` that runs only on the sim (for sim-only knobs: faults, history size, guest SSH, timings) */
// it.skip keeps the test visible as skipped on a real cluster instead of silently absent; its
// chainable type is narrower than `it`'s, but everything the suite calls on it exists.
export const itSimOnly: typeof it = onRealCluster ? (it.skip as unknown as typeof it) : it;

/**
 * `it` that needs KubeVirt's controllers (virt-api's subresources, virt-controller
 * making VMIs and launcher pods): skipped on a real API server that has only
 * KubeVirt's CRDs installed, said with `LABVIRT_E2E_CRDS_ONLY=1`.
 */
export const itNeedsKubevirt: typeof it =
  onRealCluster && process.env.LABVIRT_E2E_CRDS_ONLY === '1'
    ? (it.skip as unknown as typeof it)
    : it;

const expandHome = (path: string): string =>
  path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;

/** Loads the real cluster's kubeconfig and refuses one that would talk to the wrong place. */
function loadRealKubeConfig(path: string, context?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(expandHome(path));
  if (context) {
    if (!kc.getContextObject(context))
      throw new Error(
        `LABVIRT_E2E_CONTEXT=${context} is not a context in ${path} (have: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || 'none'
        })`,
      );
    kc.setCurrentContext(context);
  }
  const current = kc.getCurrentContext();
  if (!current || !kc.getContextObject(current))
    throw new Error(
      `${path} has no current context; set one (kubectl config use-context …) or LABVIRT_E2E_CONTEXT`,
    );
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`context ${current} in ${path} names no cluster with a server`);
  // client-node falls back to http://localhost:8080 when a kubeconfig is unusable; running the
  // suite against whatever listens there would be an accident, never the intent.
  const url = new URL(server);
  if (['localhost', '127.0.0.1', '[::1]'].includes(url.hostname) && url.port === '8080')
    throw new Error(
      `refusing ${server} from ${path}: that is client-node's fallback, not a cluster; point LABVIRT_E2E_KUBECONFIG at a real kubeconfig`,
    );
  return kc;
}

const apiCode = (err: unknown): number | undefined =>
  err instanceof ApiException ? err.code : undefined;

/**
 * Starts the target for one test file. On the sim, simOptions go to startSim (speed defaults to
 * 200); on a real cluster they are ignored.
 */
export async function startTarget(
  simOptions: Partial<SimOptions> = {},
): Promise<ConformanceTarget> {
  const kind: ConformanceTarget['kind'] = onRealCluster ? 'real' : 'sim';
  // Time first, so leftovers sort by age; random, so parallel runs (and several targets in one
  // process) never share a namespace.
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const prefix = `lvc-${runId}`;
  let sim: SimHandle | undefined;
  let dir: string | undefined;
  let kc: KubeConfig;
  if (kind === 'real') {
    kc = loadRealKubeConfig(process.env.LABVIRT_E2E_KUBECONFIG!, process.env.LABVIRT_E2E_CONTEXT);
  } else {
    dir = simOptions.dir ?? mkdtempSync(join(tmpdir(), 'labvirt-conf-'));
    sim = await startSim({ speed: 200, ...simOptions, dir });
    kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
  }
  const core = kc.makeApiClient(CoreV1Api);
  const created: string[] = [];
  let stopped = false;
  const defaultTimeout = kind === 'sim' ? 10_000 : 120_000;
  // A real API server is shared and rate-limits clients; the sim answers in microseconds.
  const pollMs = kind === 'sim' ? 20 : 500;

  const until = async (fn: () => Promise<boolean>, what: string, timeoutMs = defaultTimeout) => {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      try {
        if (await fn()) return;
        lastError = undefined;
      } catch (err) {
        // Objects appear asynchronously (a VMI after its VM), so "not there yet" is not a failure.
        lastError = err;
      }
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${timeoutMs} ms on the ${kind} target: ${what}${
            lastError ? ` (last error: ${describeError(lastError)})` : ''
          }`,
        );
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };

  return {
    kind,
    kc,
    ...(sim ? { sim } : {}),
    async createNamespace(base, labels = {}) {
      const name = `${prefix}-${base}`;
      if (name.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name))
        throw new Error(`namespace ${name} is not a valid DNS label; shorten or fix "${base}"`);
      await core.createNamespace({
        body: { metadata: { name, labels: { ...labels, [conformanceLabel]: runId } } },
      });
      created.push(name);
      return name;
    },
    until,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        // Only the names this target created: a real cluster's other namespaces are not ours.
        // Every one is attempted even when one fails, so a single error leaves nothing else behind.
        const pending: string[] = [];
        const failures: string[] = [];
        for (const name of created) {
          try {
            await core.deleteNamespace({ name });
            pending.push(name);
          } catch (err) {
            if (apiCode(err) !== 404) failures.push(`${name}: ${describeError(err)}`);
          }
        }
        const gone = async (name: string) => {
          try {
            await core.readNamespace({ name });
            return false;
          } catch (err) {
            if (apiCode(err) === 404) return true;
            throw err;
          }
        };
        const waitMs = kind === 'sim' ? 5_000 : 180_000;
        await until(
          async () => (await Promise.all(pending.map(gone))).every(Boolean),
          `conformance namespaces deleted (${pending.join(', ')}); leftovers carry ${conformanceLabel}=${runId}`,
          waitMs,
        ).catch((err: unknown) => {
          // A slow finalizer on a real cluster should not fail the suite; say what was left.
          if (kind === 'real') console.warn(String(err));
          else failures.push(String(err));
        });
        if (failures.length > 0)
          throw new Error(`cleaning up the ${kind} target failed:\n${failures.join('\n')}`);
      } finally {
        await sim?.stop();
        if (dir && !simOptions.dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    return `HTTP ${err.code}: ${typeof body === 'string' ? body : JSON.stringify(body)}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The HTTP status a call ends with: 200 when it succeeds, the ApiException's code when refused. */
export async function statusCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
}
