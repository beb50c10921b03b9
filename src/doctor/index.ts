import type { Config } from '../config/index.js';
import { ClusterInspector, loadKubeConfig } from '../kube/index.js';
import {
  checkApi,
  checkCapacity,
  checkClock,
  checkKubevirt,
  checkNetworkPolicyCni,
  checkPermissions,
} from './cluster.js';
import { checkImagePinning, checkImages, defaultProbeNamespace } from './images.js';
import { checkGatewayPort, checkRedis } from './local.js';
import { fail, warn, worstOf, type CheckResult, type DoctorReport } from './types.js';

export type { CheckResult, CheckStatus, DoctorReport } from './types.js';

export interface DoctorOptions {
  config: Config;
  /** Where KubeVirt is installed (its `KubeVirt` resource). */
  kubevirtNamespace?: string;
  /** Each API call the doctor makes, as `verb Kind` (tests check them against DOCTOR_PERMISSIONS). */
  onRequest?: (verb: string, kind: string) => void;
  /**
   * Opt-in: check that every flavor's containerDisk image can be pulled, with
   * a short-lived probe pod per image (it creates pods, so never by default).
   */
  images?: {
    /** Where the probe pods run; default labvirt's own namespace (in a pod) or the context's. */
    namespace?: string;
    /** How long one image may take to pull (default 120 s). */
    deadlineMs?: number;
  };
  /** Aborted (Ctrl-C): running probes stop and their pods are removed. */
  signal?: AbortSignal;
}

/**
 * Checks the cluster and settings labvirt is pointed at: the API, KubeVirt
 * and its configuration, permissions, capacity, the CNI, whether images are
 * pinned by digest, Redis, the gateway port and clocks. Never throws for what it finds: everything is a result.
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const { config } = options;
  const results: CheckResult[] = [];
  let inspector: ClusterInspector | undefined;
  try {
    inspector = new ClusterInspector(loadKubeConfig(config.kube), options.onRequest);
  } catch (err) {
    results.push(
      fail(
        'api',
        'Kubernetes API reachable',
        (err as Error).message,
        'set kube.kubeconfig (or $LABVIRT_KUBECONFIG); in a pod the service account is used',
      ),
    );
  }
  if (inspector) {
    const api = await checkApi(inspector);
    results.push(api.result);
    if (api.result.status !== 'fail') {
      results.push(...(await checkKubevirt(inspector, options.kubevirtNamespace ?? 'kubevirt')));
      results.push(await checkPermissions(inspector, config.kube.envClusterRole));
      results.push(...(await nodeChecks(inspector, config)));
      results.push(checkClock(api.version));
      if (options.images) {
        results.push(
          ...(await checkImages(inspector, config, {
            namespace: options.images.namespace ?? defaultProbeNamespace(inspector),
            deadlineMs: options.images.deadlineMs ?? 120_000,
            signal: options.signal,
          })),
        );
      }
    }
  }
  results.push(checkImagePinning(config));
  results.push(...(await checkRedis(config)));
  results.push(await checkGatewayPort(config));
  return { results, worst: worstOf(results) };
}

async function nodeChecks(inspector: ClusterInspector, config: Config): Promise<CheckResult[]> {
  try {
    const [nodes, pods] = await Promise.all([inspector.nodes(), inspector.runningPods()]);
    return [checkCapacity(config, nodes, pods), checkNetworkPolicyCni(pods)];
  } catch (err) {
    return [
      warn(
        'capacity',
        'Room for the warm pool',
        `cannot list nodes and pods: ${(err as Error).message}`,
        'let labvirt list nodes and pods cluster-wide (Helm: rbac.doctor=true) to check capacity and the CNI',
      ),
    ];
  }
}

const MARK = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' } as const;

/** The report for people: one line per check, and how to fix each warn and fail. */
export function formatReport(report: DoctorReport): string {
  const lines = report.results.flatMap((r) => [
    `${MARK[r.status]}  ${r.title}: ${r.detail}`,
    ...(r.fix ? [`      fix: ${r.fix}`] : []),
  ]);
  const count = (s: string) => report.results.filter((r) => r.status === s).length;
  lines.push('', `${count('pass')} passed, ${count('warn')} warnings, ${count('fail')} failed`);
  return `${lines.join('\n')}\n`;
}

/** 0 when everything passed, 3 when the worst is a warning, 4 when anything failed. */
export function doctorExitCode(report: DoctorReport): number {
  return { pass: 0, warn: 3, fail: 4 }[report.worst];
}
