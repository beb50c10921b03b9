import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import type { Config } from '../config/index.js';
import { pinImage, type ImageLock } from '../images/index.js';
import {
  LABELS,
  apiErrorMessage,
  imageLockOf,
  imagePinning,
  unpinnedImagesNotice,
  type ClusterInspector,
} from '../kube/index.js';
import { fail, pass, warn, type CheckResult } from './types.js';

/** Where a pod finds its own namespace (in-cluster). */
const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** Waiting reasons a kubelet gives when an image cannot be pulled. */
const PULL_FAILURES = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'RegistryUnavailable',
]);
/** Waiting reasons that come after a pull succeeded (the command itself may not exist). */
const AFTER_PULL = new Set(['CreateContainerError', 'RunContainerError', 'CrashLoopBackOff']);

const POLL_MS = 500;

export interface ImageCheckOptions {
  /** Where the probe pods run (labvirt's own namespace). */
  namespace: string;
  /** How long one image may take to pull before it counts as failed. */
  deadlineMs: number;
  /** Aborted (Ctrl-C): stop waiting, remove the pods, report what is known. */
  signal?: AbortSignal;
}

/** labvirt's own namespace when run in a pod, else the kubeconfig context's, else `default`. */
export function defaultProbeNamespace(inspector: ClusterInspector): string {
  if (existsSync(SERVICE_ACCOUNT_NAMESPACE)) {
    const ns = readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
    if (ns) return ns;
  }
  return inspector.contextNamespace() ?? 'default';
}

type Verdict =
  | { kind: 'pulled'; imageID?: string }
  | { kind: 'failed'; reason: string; message: string }
  | undefined;

function verdictOf(pod: V1Pod): Verdict {
  const status: V1ContainerStatus | undefined = pod.status?.containerStatuses?.[0];
  if (!status) return undefined;
  const waiting = status.state?.waiting;
  if (waiting?.reason && PULL_FAILURES.has(waiting.reason)) {
    return { kind: 'failed', reason: waiting.reason, message: waiting.message ?? '' };
  }
  if (
    status.imageID ||
    status.state?.running ||
    status.state?.terminated ||
    (waiting?.reason && AFTER_PULL.has(waiting.reason))
  ) {
    return { kind: 'pulled', imageID: status.imageID || undefined };
  }
  return undefined;
}

function probePod(image: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `labvirt-doctor-pull-${randomBytes(4).toString('hex')}`,
      labels: { [LABELS.managedBy]: 'labvirt', 'labvirt.io/doctor': 'image-pull' },
    },
    spec: {
      restartPolicy: 'Never',
      // The kubelet kills it if it somehow lingers; doctor deletes it anyway.
      activeDeadlineSeconds: 300,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65534,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'pull',
          image,
          imagePullPolicy: 'Always',
          // containerDisk images are mostly a disk file: the command need not
          // exist; a start error after the pull still counts as pulled.
          command: ['/bin/true'],
          resources: {
            requests: { cpu: '10m', memory: '16Mi' },
            limits: { cpu: '100m', memory: '32Mi' },
          },
          securityContext: {
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
    },
  };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** One image: a probe pod, watched until the kubelet pulled it or gave up; always removed. */
async function probeImage(
  inspector: ClusterInspector,
  image: string,
  options: ImageCheckOptions,
): Promise<
  Verdict | { kind: 'timeout' } | { kind: 'interrupted' } | { kind: 'error'; message: string }
> {
  let name: string | undefined;
  try {
    const created = await inspector.createPod(options.namespace, probePod(image));
    name = created.metadata!.name!;
    const deadline = Date.now() + options.deadlineMs;
    for (;;) {
      if (options.signal?.aborted) return { kind: 'interrupted' };
      const verdict = verdictOf(await inspector.readPod(options.namespace, name));
      if (verdict) return verdict;
      if (Date.now() > deadline) return { kind: 'timeout' };
      await sleep(POLL_MS, options.signal);
    }
  } catch (err) {
    return { kind: 'error', message: apiErrorMessage(err) };
  } finally {
    if (name) await inspector.deletePod(options.namespace, name).catch(() => undefined);
  }
}

/**
 * Whether the images the envs use are pinned by digest (the image lock) or
 * only by tag. Needs no cluster: it reads the lock and the image inventory.
 */
export function checkImagePinning(config: Config): CheckResult {
  const id = 'images.pinned';
  const title = 'Images pinned by digest';
  let pinning;
  try {
    pinning = imagePinning(config);
  } catch (err) {
    return fail(
      id,
      title,
      (err as Error).message,
      'point vm.imagesLock at the lock `labvirt images lock` wrote, or remove the setting',
    );
  }
  const notice = unpinnedImagesNotice(pinning);
  if (notice) {
    return warn(
      id,
      title,
      notice,
      `\`labvirt images lock\` needs no cluster, only the registries (or vm.registryMirrors, vm.proxy); commit ${pinning.path} and bake golden images again (docs/host-cluster.md, "Images pinned by digest")`,
    );
  }
  return pass(id, title, `all ${pinning.inUse} images the envs use, by ${pinning.path}`);
}

/**
 * Whether the host cluster can pull each flavor's containerDisk image (opt-in:
 * it creates pods). One probe pod per distinct image in `namespace`, with
 * `imagePullPolicy: Always`, removed whatever happens. Images the image lock
 * lists are probed by their locked digest, as the VMs will pull them.
 */
export async function checkImages(
  inspector: ClusterInspector,
  config: Config,
  options: ImageCheckOptions,
): Promise<CheckResult[]> {
  let lock: ImageLock | undefined;
  try {
    lock = imageLockOf(config);
  } catch (err) {
    return [
      fail(
        'image.lock',
        'Image lock readable',
        (err as Error).message,
        'point vm.imagesLock at the lock `labvirt images lock` wrote, or remove the setting',
      ),
    ];
  }
  const flavorsOf = new Map<string, string[]>();
  for (const [flavor, f] of Object.entries(config.flavors)) {
    const image = pinImage(lock, f.image ?? config.vm.image);
    flavorsOf.set(image, [...(flavorsOf.get(image) ?? []), flavor]);
  }
  const results = await Promise.all(
    [...flavorsOf].map(async ([image, flavors]) => {
      const id = `image.${flavors[0]}`;
      const title = `Image of ${flavors.join(', ')} pullable`;
      const verdict = await probeImage(inspector, image, options);
      const where = `(probe pod in namespace ${options.namespace})`;
      switch (verdict?.kind) {
        case 'pulled':
          return pass(id, title, `${image} pulled ${where}`);
        case 'failed':
          return fail(
            id,
            title,
            `${image}: ${verdict.reason}: ${verdict.message}`,
            'check the image reference (flavors.<name>.image or vm.image), that the registry is reachable from the nodes, and pull credentials (imagePullSecrets)',
          );
        case 'timeout':
          return warn(
            id,
            title,
            `${image}: not pulled within ${Math.round(options.deadlineMs / 1000)} s ${where}`,
            'a large image on a slow link: run again with a longer --image-timeout, or pre-pull it on the nodes',
          );
        case 'interrupted':
          return warn(
            id,
            title,
            `${image}: interrupted; the probe pod was removed`,
            'run the check again',
          );
        default:
          return warn(
            id,
            title,
            `${image}: could not run a probe pod in namespace ${options.namespace}: ${verdict?.kind === 'error' ? verdict.message : 'no status'}`,
            `let labvirt create, get and delete pods in ${options.namespace} (Helm: rbac.doctor=true), or pick another with --images-namespace`,
          );
      }
    }),
  );
  return results;
}
