import type { ObjectStore, Obj } from './store.js';

export interface PodEmulationOptions {
  /** Image references the sim's registries do not have: pulling them fails. */
  missingImages: readonly string[];
  /** How long an image pull takes (and each back-off step after a failed one). */
  pullMs: number;
}

/**
 * A kubelet for the plain pods a client creates (not KubeVirt's launchers):
 * each container's image is pulled, then its command runs and exits 0 at
 * once. An image in `missingImages` fails the way a kubelet reports it:
 * `ErrImagePull`, then `ImagePullBackOff`, with the registry's message.
 */
export class PodEmulation {
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly options: PodEmulationOptions,
  ) {
    store.onChange((e) => {
      if (this.stopped || e.resource !== 'pods' || e.type !== 'ADDED') return;
      if (e.object.metadata.labels?.['kubevirt.io'] === 'virt-launcher') return;
      this.later(() => this.pulled(e.object), options.pullMs);
    });
  }

  private later(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
  }

  private containersOf(pod: Obj): Array<{ name: string; image: string }> {
    const spec = (pod as { spec?: { containers?: Array<{ name: string; image: string }> } }).spec;
    return spec?.containers ?? [];
  }

  private setStatus(pod: Obj, status: Record<string, unknown>): boolean {
    const current = this.store.get('pods', pod.metadata.namespace, pod.metadata.name!);
    if (!current || current.metadata.uid !== pod.metadata.uid) return false;
    this.store.update('pods', { ...current, status } as Obj);
    return true;
  }

  private pulled(pod: Obj): void {
    const containers = this.containersOf(pod);
    const missing = containers.find((c) => this.options.missingImages.includes(c.image));
    const at = new Date().toISOString();
    if (!missing) {
      this.setStatus(pod, {
        phase: 'Succeeded',
        startTime: at,
        containerStatuses: containers.map((c) => ({
          name: c.name,
          image: c.image,
          imageID: `${c.image}@sha256:${'0'.repeat(64)}`,
          ready: false,
          restartCount: 0,
          state: {
            terminated: { exitCode: 0, reason: 'Completed', startedAt: at, finishedAt: at },
          },
        })),
      });
      return;
    }
    const waiting = (reason: string, message: string) => ({
      phase: 'Pending',
      startTime: at,
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: false,
        restartCount: 0,
        state:
          c === missing
            ? { waiting: { reason, message } }
            : { waiting: { reason: 'PodInitializing' } },
      })),
    });
    const ref = missing.image;
    const notFound =
      `failed to pull and unpack image "${ref}": failed to resolve reference "${ref}": ` +
      `${ref}: not found`;
    if (!this.setStatus(pod, waiting('ErrImagePull', notFound))) return;
    this.later(
      () => this.setStatus(pod, waiting('ImagePullBackOff', `Back-off pulling image "${ref}"`)),
      this.options.pullMs,
    );
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
