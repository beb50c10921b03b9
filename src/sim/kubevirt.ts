import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UnknownGuestError, type GuestResolver } from '../ssh/index.js';
import type { Admission } from './api.js';
import { parseQuantity } from './cluster.js';
import {
  applyWriteFiles,
  parseShellEnv,
  renderUserDataTemplate,
  startGuest,
  writeFilesFromUserData,
  type Guest,
} from './guest/index.js';
import { startStudentCluster, type StudentCluster } from './inner.js';
import { EnvNetwork, PublishedPorts, type EnvMember } from './env-network.js';
import { kubeletReadiness, recordKubeletCondition } from './kubelet.js';
import { LauncherStory } from './launcher-story.js';
import type { ListenSpec } from './listen.js';
import { ApiError, timestamp, type ObjectStore, type Obj, type ResourceType } from './store.js';

export interface SimNode {
  name: string;
  cpu: number;
  /** Bytes. */
  memory: number;
  ready: boolean;
}

export interface KubeVirtTimings {
  schedulingMs: number;
  /** Image pull + boot until the VMI is Running. */
  bootMs: number;
  /** After Running, until the guest agent connects. */
  agentMs: number;
  /** After Running, until cloud-init writes the readiness marker. */
  bootstrapMs: number;
  /**
   * How often a student cluster's nodes post status (their kubelets' state
   * read from the guests' disks, see kubelet.ts); a kubelet posts every 10 s.
   */
  kubeletHeartbeatMs: number;
}

export interface KubeVirtFaults {
  /** The next N VMIs fail (phase Failed) instead of running. */
  failNextVmis: number;
  /** The next N VMIs run but never become ready (no agent, no marker). */
  neverReadyVmis: number;
  /** Every command a guest runs starts this much later (guests starved of CPU); 0 = off. */
  slowGuestCommandsMs: number;
  /**
   * A control plane's cluster (`kubeadm init`: the student API server,
   * admin.conf) comes up this much later (a loaded machine); the control
   * plane is ready only once it is up, as on a real VM. 0 = off.
   */
  slowKubeadmInitMs: number;
}

/** The KubeVirt faults, all off (the start, and a reset). */
export function noKubeVirtFaults(): KubeVirtFaults {
  return { failNextVmis: 0, neverReadyVmis: 0, slowGuestCommandsMs: 0, slowKubeadmInitMs: 0 };
}

interface VmiRuntime {
  timers: NodeJS.Timeout[];
  guest?: Guest;
  /** On a control plane, once kubeadm init is done: the student cluster's API server. */
  inner?: StudentCluster;
  /** A worker whose kubelet has joined (registers with the control plane whenever it is up). */
  joined?: boolean;
  nodeName?: string;
  ip?: string;
  /** Loopback address standing for the guest's interface (see `listenAddressOf`). */
  listenAddress?: string;
  node?: string;
  cpu: number;
  memory: number;
  neverReady: boolean;
  fail: boolean;
  /** The virt-launcher pod, once created (events and status are told about it). */
  pod?: Obj;
  role?: 'control-plane' | 'worker';
  sandboxRoot?: string;
  /** The Ready message last written into the guest for its journalctl (kubelet.ts). */
  kubeletCondition?: string;
  /** The control plane's name in its namespace (its admin.conf server), from cluster.env. */
  controlPlaneName?: string;
  /** The VMI's `spec.subdomain`: the host's DNS names the node `<node>.<subdomain>.<ns>.svc`. */
  subdomain?: string;
  /** A sandboxed guest's own ports as host addresses (NodePorts, the address map). */
  published?: PublishedPorts;
}

/**
 * What labvirt's guests call their control plane inside their namespace (the
 * `controlPlaneEndpoint` is `<name>.<ns>.svc.<domain>`): cluster.env's
 * `LABVIRT_CONTROL_PLANE_NAME`, or `LABVIRT_CONTROL_PLANE_SERVICE` in an env
 * made by a labvirt from before the control plane's own Service was folded
 * into `nodes`.
 */
const DEFAULT_CONTROL_PLANE_NAME = 'control-plane.nodes';

/** The files a guest's user data writes (`write_files`), by path. */
type UserDataFiles = Map<string, string>;

/** The cluster CA in user data, from which the sim starts a student cluster. */
function clusterCaOf(files: UserDataFiles): { certPem: string; keyPem: string } | undefined {
  const certPem = files.get('/etc/kubernetes/pki/ca.crt');
  const keyPem = files.get('/etc/kubernetes/pki/ca.key');
  return certPem && keyPem ? { certPem, keyPem } : undefined;
}
function controlPlaneNameOf(env: Record<string, string>): string {
  return (
    env.LABVIRT_CONTROL_PLANE_NAME ??
    env.LABVIRT_CONTROL_PLANE_SERVICE ??
    DEFAULT_CONTROL_PLANE_NAME
  );
}

const RUNNING_STRATEGIES = new Set(['Always', 'RerunOnFailure']);
const now = timestamp;

/**
 * KubeVirt as labvirt sees it: VirtualMachine → VirtualMachineInstance (+ a
 * virt-launcher Pod with the template labels) → Pending, Scheduling,
 * Scheduled, Running with a pod IP, Ready and AgentConnected; VM status
 * follows. Capacity per node; what does not fit stays Unschedulable until
 * room frees. Running VMIs get an SSH guest (src/sim/guest).
 */
export class KubeVirtEmulation implements Admission {
  readonly faults: KubeVirtFaults = noKubeVirtFaults();
  private readonly runtime = new Map<string, VmiRuntime>();
  private readonly guestsByIp = new Map<
    string,
    { port: number; namespace: string; listenAddress: string; published?: PublishedPorts }
  >();
  private readonly envNetworks = new Map<string, EnvNetwork>();
  private readonly studentClusters = new Map<string, StudentCluster>();
  private readonly studentApiByIp = new Map<string, StudentCluster>();
  private nextIp = 10;
  private stopped = false;
  /**
   * Boots, student-cluster starts and VMI removals under way: they write
   * into (or remove) guests' sandboxes, so stop() waits for them (a test removing the simulator's
   * directory after stop() met files still being written: ENOTEMPTY).
   */
  private readonly inFlight = new Set<Promise<unknown>>();
  private heartbeat?: NodeJS.Timeout;
  private readonly onGuestsChanged: () => void;
  private readonly story: LauncherStory;
  private get listenHost(): string {
    return this.options.listen?.host ?? '127.0.0.1';
  }

  constructor(
    private readonly store: ObjectStore,
    readonly nodes: SimNode[],
    private readonly timings: KubeVirtTimings,
    private readonly options: {
      dataDir: string;
      guests: boolean;
      onGuestsChanged?: () => void;
      /** Admission of a launcher pod (LimitRange, quota): throws ApiError to refuse. */
      admitLauncher?: (pod: Obj) => void;
      /** Delays of the student clusters' own API servers (namespace deletion, quota status). */
      studentCluster?: { namespaceDeleteDelayMs: number; quotaStatusDelayMs: number };
      /**
       * Second octet of the loopback block 127.X.0.0/16 this sim's guests
       * listen in (one address per guest, from 127.X.1.0 up): distinct per
       * sim, so sims running side by side do not share guest addresses.
       */
      loopbackOctet?: number;
      /** Where guests and student API servers listen (default 127.0.0.1, any port). */
      listen?: ListenSpec;
      /** Guests may run unsandboxed where bubblewrap cannot (see guest/sandbox.ts). */
      allowUnsandboxedGuests?: boolean;
      /** The host's kubectl, mounted into sandboxed guests. */
      guestKubectl?: string;
      /** A sandboxed guest's helper goes after this long idle (see guest/server.ts); 0: never. */
      guestIdleStopMs?: number;
    },
  ) {
    this.onGuestsChanged = options.onGuestsChanged ?? (() => undefined);
    this.story = new LauncherStory(store);
    store.onChange((e) => {
      if (this.stopped) return;
      if (e.resource === 'virtualmachines') {
        if (e.type === 'DELETED')
          this.deleteVmi(e.object.metadata.namespace!, e.object.metadata.name!);
        else
          setImmediate(() =>
            this.reconcileVm(e.object.metadata.namespace!, e.object.metadata.name!),
          );
      }
      if (e.resource === 'virtualmachineinstances' && e.type === 'DELETED') {
        this.track(this.vmiGone(e.object));
      }
    });
  }

  /**
   * The address seam: a running guest's (IP, 22) → its loopback SSH port, and
   * a control plane's (IP, 6443) → its student cluster's API server.
   */
  readonly resolveGuest: GuestResolver = (ip, port) => {
    const g = this.guestsByIp.get(ip);
    if (g && port === 22) return { host: this.listenHost, port: g.port };
    const api = port === 6443 ? this.studentApiByIp.get(ip)?.port : undefined;
    if (api) return { host: this.listenHost, port: api };
    // Any other port: whatever a command in the guest listens on there.
    if (g && port !== 6443) return g.published?.publish(port) ?? { host: g.listenAddress, port };
    throw new UnknownGuestError(`no guest listening at ${ip}:${port}`);
  };

  /** The loopback address a guest's own listeners bind (`LABVIRT_GUEST_ADDR` in its commands). */
  private listenAddressOf(guestIndex: number): string {
    const octet = this.options.loopbackOctet ?? 77;
    // 127.X.0.* is left to the sim's nodes.
    return `127.${octet}.${1 + (Math.floor(guestIndex / 254) % 254)}.${(guestIndex % 254) + 1}`;
  }

  guestMap(): Record<string, string> {
    return Object.fromEntries([
      ...[...this.guestsByIp].map(([ip, g]) => [`${ip}:22`, `${this.listenHost}:${g.port}`]),
      ...[...this.studentApiByIp]
        .filter(([, c]) => c.port !== undefined)
        .map(([ip, c]) => [`${ip}:6443`, `${this.listenHost}:${c.port}`]),
    ]);
  }

  /** Rewrites guests.json (a student API server moved or stopped). */
  guestsChanged(): void {
    this.onGuestsChanged();
  }

  /**
   * The kubelets of every registered student node post status: each node's
   * Ready condition follows its kubelet and containerd state in its guest.
   * One timer for the whole sim, running while any guest does; a round
   * starts after the previous one ended.
   */
  private scheduleHeartbeat(): void {
    if (this.heartbeat || this.stopped || !this.options.guests) return;
    this.heartbeat = setTimeout(() => {
      void this.postNodeStatus().finally(() => {
        this.heartbeat = undefined;
        if ([...this.runtime.values()].some((rt) => rt.guest)) this.scheduleHeartbeat();
      });
    }, this.timings.kubeletHeartbeatMs);
    this.heartbeat.unref();
  }

  private async postNodeStatus(): Promise<void> {
    for (const [key, rt] of this.runtime) {
      if (!rt.sandboxRoot || !rt.nodeName) continue;
      const ns = key.slice(0, key.indexOf('/'));
      // A worker's node exists once it joined; the control plane's with its API server.
      const registered = rt.role === 'control-plane' ? rt.inner !== undefined : rt.joined;
      if (!registered) continue;
      const readiness = await kubeletReadiness(rt.sandboxRoot);
      if (this.stopped || this.runtime.get(key) !== rt) continue;
      this.studentClusters.get(ns)?.reportReadiness(rt.nodeName, readiness);
      // Written only when it changes: most rounds find every node as it was.
      if (rt.kubeletCondition !== readiness.message) {
        rt.kubeletCondition = readiness.message;
        await recordKubeletCondition(rt.sandboxRoot, readiness);
      }
    }
  }

  /** The student cluster of an env (its control plane's API server), while it runs. */
  studentCluster(namespace: string): StudentCluster | undefined {
    return this.studentClusters.get(namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.heartbeat);
    for (const rt of this.runtime.values()) for (const t of rt.timers) clearTimeout(t);
    // Each sees `stopped` when it ends and stops what it started. Work may
    // start while this waits (a VMI deleted meanwhile: its removal is
    // tracked too), so wait until none is left, before and after the guests.
    await this.settleInFlight();
    for (const rt of this.runtime.values()) {
      await rt.guest?.stop();
      await rt.inner?.stop();
    }
    await this.settleInFlight();
    this.runtime.clear();
    this.studentClusters.clear();
    this.studentApiByIp.clear();
  }

  /** KubeVirt's start/stop/restart subresources (PUT). */
  subresource(_type: ResourceType, namespace: string, name: string, sub: string): void {
    const vm = this.store.peek('virtualmachines', namespace, name);
    if (!vm) throw new ApiError(404, 'NotFound', `virtualmachines.kubevirt.io "${name}" not found`);
    const vmi = this.store.peek('virtualmachineinstances', namespace, name);
    const spec = vm.spec as { runStrategy?: string; running?: boolean };
    const next = structuredClone(vm);
    const nspec = next.spec as { runStrategy?: string; running?: boolean };
    switch (sub) {
      case 'start':
        if (vmi && (vmi.status as { phase?: string })?.phase !== 'Failed') {
          throw new ApiError(
            409,
            'Conflict',
            `Operation cannot be fulfilled on virtualmachine.kubevirt.io "${name}": VM is already running`,
          );
        }
        if (spec.running !== undefined) nspec.running = true;
        else nspec.runStrategy = 'Always';
        break;
      case 'stop':
        if (!vmi && (spec.runStrategy === 'Halted' || spec.running === false)) {
          throw new ApiError(
            409,
            'Conflict',
            `Operation cannot be fulfilled on virtualmachine.kubevirt.io "${name}": VM is not running`,
          );
        }
        if (spec.running !== undefined) nspec.running = false;
        else nspec.runStrategy = 'Halted';
        break;
      case 'restart':
        if (!vmi)
          throw new ApiError(
            409,
            'Conflict',
            `Operation cannot be fulfilled on virtualmachine.kubevirt.io "${name}": VM is not running`,
          );
        this.stopVmi(namespace, name);
        return;
      default:
        throw new ApiError(404, 'NotFound', `subresource ${sub} not found`);
    }
    this.store.update('virtualmachines', next, { specChanged: true });
  }

  /**
   * The VM restarts as a host drain or a crash would restart it: its VMI
   * goes away and the VM controller starts a new one (a new uid, a new
   * launcher pod, the guest booted afresh from its image and cloud-init).
   */
  restartVm(namespace: string, name: string): void {
    if (!this.store.peek('virtualmachines', namespace, name))
      throw new ApiError(404, 'NotFound', `virtualmachines.kubevirt.io "${name}" not found`);
    if (!this.store.peek('virtualmachineinstances', namespace, name))
      throw new ApiError(409, 'Conflict', `virtualmachine.kubevirt.io "${name}" is not running`);
    // What virt-controller does for `restart`; the VM controller then starts a new VMI.
    this.stopVmi(namespace, name);
  }

  /**
   * What a student with root in the guest can make the guest agent report:
   * any address as the VMI's first interface (`status.interfaces[0]`). The
   * launcher pod's IP, which the guest cannot touch, stays as it is.
   */
  reportGuestAddress(namespace: string, name: string, ip: string): void {
    if (!this.store.peek('virtualmachineinstances', namespace, name))
      throw new ApiError(
        404,
        'NotFound',
        `virtualmachineinstances.kubevirt.io "${name}" not found`,
      );
    this.setVmiStatus(namespace, name, (s) => ({
      ...s,
      interfaces: [
        { name: 'default', ipAddress: ip, ipAddresses: [ip], infoSource: 'guest-agent' },
      ],
    }));
  }

  /** A node goes away: its VMIs fail. */
  failNode(name: string): void {
    const node = this.nodes.find((n) => n.name === name);
    if (node) node.ready = false;
    for (const [key, rt] of this.runtime) {
      if (rt.node !== name) continue;
      const [ns, vmiName] = key.split('/') as [string, string];
      this.setVmiStatus(ns, vmiName, (s) => ({
        ...s,
        phase: 'Failed',
        reason: 'NodeUnresponsive',
        conditions: [],
      }));
      void rt.guest?.stop();
      rt.guest = undefined;
      this.stopStudentCluster(ns, rt);
      if (rt.joined && rt.nodeName) this.studentClusters.get(ns)?.nodeLost(rt.nodeName);
    }
  }

  private desiredRunning(vm: Obj): boolean {
    const spec = vm.spec as { runStrategy?: string; running?: boolean };
    if (spec.running !== undefined) return spec.running;
    return RUNNING_STRATEGIES.has(spec.runStrategy ?? 'Halted');
  }

  private reconcileVm(namespace: string, name: string): void {
    const vm = this.store.peek('virtualmachines', namespace, name);
    if (!vm || vm.metadata.deletionTimestamp) return;
    const vmi = this.store.peek('virtualmachineinstances', namespace, name);
    const running = this.desiredRunning(vm);
    if (running && !vmi) this.createVmi(vm);
    if (!running && vmi) this.stopVmi(namespace, name);
    this.updateVmStatus(namespace, name);
  }

  /** virt-controller deletes the VMI of a VM that should not run (stop, restart). */
  private stopVmi(namespace: string, name: string): void {
    const vm = this.store.peek('virtualmachines', namespace, name);
    const vmi = this.store.remove('virtualmachineinstances', namespace, name);
    if (vm && vmi) this.story.vmStopped(vm, vmi);
  }

  /** `pods/log` of a launcher pod: virt-launcher's lines, or the guest's console. */
  podLog(_namespace: string, pod: Obj, container: string | undefined): string | undefined {
    return this.story.log(pod, container);
  }

  private updateVmStatus(namespace: string, name: string): void {
    const vm = this.store.peek('virtualmachines', namespace, name);
    if (!vm) return;
    const vmi = this.store.peek('virtualmachineinstances', namespace, name);
    const vs = (vmi?.status ?? {}) as {
      phase?: string;
      conditions?: { type: string; status: string; reason?: string }[];
    };
    const unschedulable = vs.conditions?.some(
      (c) => c.type === 'PodScheduled' && c.status === 'False',
    );
    const ready = vs.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    let printableStatus = 'Stopped';
    if (vm.metadata.deletionTimestamp) printableStatus = 'Terminating';
    else if (vmi) {
      if (unschedulable) printableStatus = 'ErrorUnschedulable';
      else if (vs.phase === 'Running') printableStatus = 'Running';
      else if (vs.phase === 'Failed') printableStatus = 'CrashLoopBackOff';
      else printableStatus = 'Starting';
    } else if (this.desiredRunning(vm)) printableStatus = 'Starting';
    const status = {
      printableStatus,
      ready,
      created: Boolean(vmi),
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    };
    if (JSON.stringify(vm.status) === JSON.stringify(status)) return;
    const next = structuredClone(vm);
    next.status = status;
    this.store.update('virtualmachines', next);
  }

  private createVmi(vm: Obj): void {
    const ns = vm.metadata.namespace!;
    const name = vm.metadata.name!;
    const template =
      (
        vm.spec as {
          template?: {
            metadata?: { labels?: Record<string, string> };
            spec?: Record<string, unknown>;
          };
        }
      ).template ?? {};
    const labels = {
      ...template.metadata?.labels,
      'kubevirt.io/created-by': vm.metadata.uid ?? '',
      'vm.kubevirt.io/name': name,
    };
    const vmi = this.store.create('virtualmachineinstances', {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: {
        name,
        namespace: ns,
        labels,
        ownerReferences: [
          {
            apiVersion: 'kubevirt.io/v1',
            kind: 'VirtualMachine',
            name,
            uid: vm.metadata.uid!,
            controller: true,
            blockOwnerDeletion: true,
          } as never,
        ],
      },
      spec: structuredClone(template.spec ?? {}),
      status: { phase: 'Pending', conditions: [] },
    });
    this.story.vmStarted(vm, vmi);
    const domain = (
      template.spec as {
        domain?: {
          cpu?: { cores?: number };
          memory?: { guest?: string };
          resources?: { requests?: { memory?: string }; limits?: { cpu?: string | number } };
        };
      }
    )?.domain;
    const cores = domain?.cpu?.cores ?? 1;
    const guestMem = parseQuantity(
      domain?.memory?.guest ?? domain?.resources?.requests?.memory ?? '1Gi',
    );
    // KubeVirt's launcher overhead: ~220 MiB + guest RAM/512 + 8 MiB per vCPU.
    const memory = guestMem + 220 * 2 ** 20 + guestMem / 512 + cores * 8 * 2 ** 20;
    const cpu = cores * 0.1; // cpuAllocationRatio 10
    const fail = this.faults.failNextVmis > 0;
    if (fail) this.faults.failNextVmis--;
    const neverReady = !fail && this.faults.neverReadyVmis > 0;
    if (neverReady) this.faults.neverReadyVmis--;
    const rt: VmiRuntime = { timers: [], cpu, memory, fail, neverReady };
    this.runtime.set(`${ns}/${name}`, rt);
    const containerDisks = (
      (template.spec as { volumes?: { name?: string; containerDisk?: unknown }[] })?.volumes ?? []
    ).filter((v) => v.containerDisk);
    const cpuLimit = domain?.resources?.limits?.cpu;
    // The virt-launcher pod carries the template's labels: NetworkPolicies and Services select it.
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `virt-launcher-${name}-${randomBytes(3).toString('hex').slice(0, 5)}`,
        namespace: ns,
        labels: {
          ...template.metadata?.labels,
          'kubevirt.io': 'virt-launcher',
          'vm.kubevirt.io/name': name,
          // virt-controller names the VMI the pod runs by its uid.
          'kubevirt.io/created-by': vmi.metadata.uid!,
        },
        annotations: { 'kubectl.kubernetes.io/default-container': 'compute' },
        ownerReferences: [
          {
            apiVersion: 'kubevirt.io/v1',
            kind: 'VirtualMachineInstance',
            name,
            uid: vmi.metadata.uid!,
            controller: true,
          } as never,
        ],
      },
      spec: {
        containers: [
          {
            name: 'compute',
            image: 'quay.io/kubevirt/virt-launcher',
            resources: {
              requests: { cpu: String(cpu), memory: String(Math.ceil(memory)) },
              ...(cpuLimit !== undefined ? { limits: { cpu: String(cpuLimit) } } : {}),
            },
          },
          // Each containerDisk is served by a small container of its own.
          ...containerDisks.map((v) => ({
            name: `volume${v.name ?? ''}`,
            image: 'containerdisk',
            resources: {
              requests: { cpu: '1m', memory: '1M' },
              limits: { cpu: '10m', memory: '40M' },
            },
          })),
        ],
      },
      status: { phase: 'Pending' },
    };
    this.createLauncher(ns, name, rt, pod);
  }

  /**
   * virt-controller creates the launcher pod through the API like any client:
   * LimitRange and ResourceQuota apply. A refusal leaves the VMI Pending with
   * `Synchronized=False/FailedCreate` and is retried, as virt-controller does.
   */
  private createLauncher(ns: string, name: string, rt: VmiRuntime, pod: Obj): void {
    if (this.runtime.get(`${ns}/${name}`) !== rt) return;
    const attempt = structuredClone(pod);
    try {
      this.options.admitLauncher?.(attempt);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const vmi = this.store.peek('virtualmachineinstances', ns, name);
      if (vmi) this.story.podCreateFailed(vmi, err.message);
      this.setVmiStatus(ns, name, (s) => ({
        ...s,
        phase: 'Pending',
        conditions: [
          {
            type: 'Synchronized',
            status: 'False',
            reason: 'FailedCreate',
            message: `failed to create virtual machine pod: ${err.message}`,
            lastTransitionTime: now(),
          },
        ],
      }));
      this.after(rt, Math.max(100, this.timings.schedulingMs * 2), () =>
        this.createLauncher(ns, name, rt, pod),
      );
      return;
    }
    rt.pod = this.store.create('pods', attempt);
    const vmi = this.store.peek('virtualmachineinstances', ns, name);
    if (vmi) this.story.podCreated(vmi, rt.pod);
    this.after(rt, this.timings.schedulingMs, () => this.schedule(ns, name));
  }

  /** The launcher pod runs with the VMI's IP (bridge binding): what Services' endpoints follow. */
  private launcherRunning(ns: string, name: string, ip: string): void {
    const uid = this.store.peek('virtualmachineinstances', ns, name)?.metadata.uid;
    for (const pod of this.store.list('pods', ns)) {
      if (!pod.metadata.ownerReferences?.some((o) => o.uid === uid)) continue;
      const next = structuredClone(pod);
      next.status = {
        ...(next.status as Record<string, unknown> | undefined),
        phase: 'Running',
        podIP: ip,
        podIPs: [{ ip }],
      };
      this.store.update('pods', next);
    }
  }

  private async settleInFlight(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Runs detached, and stop() waits for it. */
  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    const done = () => void this.inFlight.delete(work);
    work.then(done, done);
  }

  private after(rt: VmiRuntime, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      rt.timers = rt.timers.filter((x) => x !== t);
      if (!this.stopped) fn();
    }, ms);
    rt.timers.push(t);
  }

  private setVmiStatus(
    ns: string,
    name: string,
    fn: (s: Record<string, unknown>) => Record<string, unknown>,
  ): void {
    const vmi = this.store.peek('virtualmachineinstances', ns, name);
    if (!vmi) return;
    const next = structuredClone(vmi);
    next.status = fn((next.status ?? {}) as Record<string, unknown>);
    this.store.update('virtualmachineinstances', next);
    this.updateVmStatus(ns, name);
  }

  private fits(rt: VmiRuntime): SimNode | undefined {
    const used = new Map<string, { cpu: number; memory: number }>();
    for (const other of this.runtime.values()) {
      if (!other.node) continue;
      const u = used.get(other.node) ?? { cpu: 0, memory: 0 };
      used.set(other.node, { cpu: u.cpu + other.cpu, memory: u.memory + other.memory });
    }
    return this.nodes.find((n) => {
      const u = used.get(n.name) ?? { cpu: 0, memory: 0 };
      return n.ready && u.cpu + rt.cpu <= n.cpu && u.memory + rt.memory <= n.memory;
    });
  }

  private schedule(ns: string, name: string): void {
    const rt = this.runtime.get(`${ns}/${name}`);
    if (!rt) return;
    const node = this.fits(rt);
    if (!node) {
      if (rt.pod)
        this.story.podUnschedulable(
          rt.pod,
          `0/${this.nodes.length} nodes are available: ${this.nodes.length} Insufficient memory.`,
        );
      this.setVmiStatus(ns, name, (s) => ({
        ...s,
        phase: 'Scheduling',
        conditions: [
          {
            type: 'PodScheduled',
            status: 'False',
            reason: 'Unschedulable',
            message: `0/${this.nodes.length} nodes are available: Insufficient memory.`,
            lastTransitionTime: now(),
          },
        ],
      }));
      // Retry when room may have freed.
      this.after(rt, Math.max(50, this.timings.schedulingMs), () => this.schedule(ns, name));
      return;
    }
    rt.node = node.name;
    if (rt.pod) this.story.podScheduled(rt.pod, node.name);
    rt.ip = `10.244.${Math.floor(this.nextIp / 250) % 250}.${(this.nextIp % 250) + 1}`;
    rt.listenAddress = this.listenAddressOf(this.nextIp);
    this.nextIp++;
    this.setVmiStatus(ns, name, (s) => ({
      ...s,
      phase: 'Scheduled',
      nodeName: node.name,
      conditions: [{ type: 'PodScheduled', status: 'True' }],
    }));
    this.after(rt, this.timings.bootMs, () => this.track(this.bootOrFail(ns, name, rt)));
  }

  /**
   * A boot runs detached from whoever scheduled it, so its failure must end
   * here: after `stop()` or the VMI's deletion (its sandbox may be gone
   * underneath it) it is nobody's concern; otherwise the guest could not
   * start, which a real cluster shows as a failed VMI.
   */
  private async bootOrFail(ns: string, name: string, rt: VmiRuntime): Promise<void> {
    try {
      await this.boot(ns, name);
    } catch (err) {
      if (this.stopped || this.runtime.get(`${ns}/${name}`) !== rt) return;
      this.setVmiStatus(ns, name, (s) => ({
        ...s,
        phase: 'Failed',
        reason: 'GuestStartFailed',
        message: err instanceof Error ? err.message : String(err),
        conditions: [],
      }));
    }
  }

  private async boot(ns: string, name: string): Promise<void> {
    const rt = this.runtime.get(`${ns}/${name}`);
    if (!rt) return;
    if (rt.fail) {
      this.setVmiStatus(ns, name, (s) => ({
        ...s,
        phase: 'Failed',
        reason: 'VMIFailed',
        conditions: [],
      }));
      return;
    }
    const ip = rt.ip!;
    this.setVmiStatus(ns, name, (s) => ({
      ...s,
      phase: 'Running',
      nodeName: rt.node,
      interfaces: [{ name: 'default', ipAddress: ip, ipAddresses: [ip] }],
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Ready', status: 'True', lastTransitionTime: now() },
        { type: 'LiveMigratable', status: 'False', reason: 'InterfaceNotLiveMigratable' },
      ],
    }));
    const booted = this.store.peek('virtualmachineinstances', ns, name);
    // The story marks the launcher pod Running with the VMI's IP (and records
    // its events); without a known pod, any pod the VMI owns is marked.
    if (booted && rt.pod) this.story.booted(booted, rt.pod, ip, rt.node ?? '');
    else this.launcherRunning(ns, name, ip);
    if (!rt.neverReady) {
      const pod = rt.pod;
      if (pod) this.after(rt, this.timings.bootstrapMs, () => this.story.bootstrapped(pod));
      this.after(rt, this.timings.agentMs, () =>
        this.setVmiStatus(ns, name, (s) => ({
          ...s,
          conditions: [
            ...((s.conditions as unknown[]) ?? []),
            { type: 'AgentConnected', status: 'True', lastTransitionTime: now() },
          ],
        })),
      );
    }
    if (!this.options.guests) return;
    const vmi = this.store.peek('virtualmachineinstances', ns, name);
    const volumes =
      (
        vmi?.spec as {
          volumes?: { cloudInitNoCloud?: { secretRef?: { name?: string }; userData?: string } }[];
        }
      )?.volumes ?? [];
    const ci = volumes.find((v) => v.cloudInitNoCloud)?.cloudInitNoCloud;
    let userData = ci?.userData ?? '';
    if (ci?.secretRef?.name) {
      const secret = this.store.peek('secrets', ns, ci.secretRef.name);
      const data =
        (secret?.data as Record<string, string> | undefined)?.userdata ??
        (secret?.data as Record<string, string> | undefined)?.userData;
      userData = data ? Buffer.from(data, 'base64').toString('utf8') : '';
    }
    // As cloud-init on the VM, with the NoCloud meta-data KubeVirt writes:
    // `local-hostname` is the VMI's spec.hostname, else its name.
    const spec = vmi?.spec as { hostname?: string } | undefined;
    userData = renderUserDataTemplate(userData, {
      localHostname: spec?.hostname || name.split('.')[0]!.slice(0, 63),
      instanceId: `${name}.${ns}`,
    });
    const sandboxRoot = this.sandboxOf(ns, name, vmi?.metadata.uid);
    await mkdir(sandboxRoot, { recursive: true });
    const role =
      (vmi?.metadata.labels?.['labvirt.io/role'] as 'control-plane' | 'worker' | undefined) ??
      (name === 'control-plane' ? 'control-plane' : 'worker');
    rt.nodeName = vmi?.metadata.labels?.['labvirt.io/node'] ?? name;
    rt.subdomain = (vmi?.spec as { subdomain?: string } | undefined)?.subdomain;
    // As control-plane.sh on a real VM: a control plane that runs a cluster
    // is ready once that cluster is up (admin.conf written), not at a fixed
    // time; on a loaded machine the cluster's start can take longer than
    // the rest of the bootstrap, and a lab's setup then ran before it.
    const files: UserDataFiles = new Map(
      writeFilesFromUserData(userData).map((f) => [f.path, f.content]),
    );
    const readyWithCluster = role === 'control-plane' && clusterCaOf(files) !== undefined;
    const guest = await startGuest({
      namespace: ns,
      vmiName: name,
      ip,
      role,
      userData,
      sandboxRoot,
      bootstrapDelayMs: this.timings.bootstrapMs,
      markReadyAutomatically: !rt.neverReady && !readyWithCluster,
      listenAddress: rt.listenAddress,
      listen: this.options.listen,
      hostname: name,
      kubectl: this.options.guestKubectl,
      allowUnsandboxed: this.options.allowUnsandboxedGuests,
      idleStopMs: this.options.guestIdleStopMs,
      commandDelayMs: () => this.faults.slowGuestCommandsMs,
      // kubeadm's API server on 6443 once init is done; any other port is the guest's own listener.
      forwardLocalPort: (port) =>
        Promise.resolve(
          port === 6443
            ? rt.inner?.port
              ? { host: this.listenHost, port: rt.inner.port }
              : undefined
            : { host: rt.listenAddress!, port },
        ),
      resolvePeer: (peerIp, port) => {
        const peer = this.guestsByIp.get(peerIp);
        if (!peer || peer.namespace !== ns)
          throw new UnknownGuestError(`no route to ${peerIp}:${port}`);
        return this.resolveGuest(peerIp, port);
      },
    });
    if (!this.runtime.has(`${ns}/${name}`) || this.stopped) {
      await guest.stop();
      return;
    }
    rt.guest = guest;
    rt.sandboxRoot = sandboxRoot;
    this.scheduleHeartbeat();
    rt.role = role;
    rt.controlPlaneName = controlPlaneNameOf(
      parseShellEnv(files.get('/etc/labvirt/cluster.env') ?? ''),
    );
    rt.published = guest.sandboxed ? new PublishedPorts(rt.listenAddress!, guest) : undefined;
    this.guestsByIp.set(ip, {
      port: guest.port,
      namespace: ns,
      listenAddress: rt.listenAddress!,
      published: rt.published,
    });
    await this.updateEnvNetwork(ns);
    this.onGuestsChanged();
    if (rt.neverReady) return;
    if (role === 'control-plane') {
      // kubeadm init brings the API up about halfway through the bootstrap.
      // Whichever timer runs first starts it, once: the readiness marker
      // waits for that start, and must not find none and give up for good
      // should the marker's timer ever run first (two control planes of a
      // 200-env fill once stayed unmarked, their clusters up).
      let clusterUp: Promise<unknown> | undefined;
      const startCluster = () =>
        (clusterUp ??= this.startStudentCluster(ns, name, rt, files, ip, sandboxRoot).catch(
          () => undefined,
        ));
      this.after(rt, this.timings.bootstrapMs / 2, () => this.track(startCluster()));
      if (readyWithCluster) {
        this.after(rt, this.timings.bootstrapMs, () =>
          this.track(
            startCluster().then(async () => {
              if (this.stopped || this.runtime.get(`${ns}/${name}`) !== rt || !rt.inner) return;
              await rt.guest?.markReady();
            }),
          ),
        );
      }
    } else {
      this.after(rt, this.timings.bootstrapMs, () => {
        rt.joined = true;
        this.studentClusters
          .get(ns)
          ?.registerNode({ name: rt.nodeName ?? name, ip, role: 'worker' });
      });
    }
  }

  /**
   * What `kubeadm init` leaves behind, from the CA and settings labvirt put in
   * the control plane's cloud-init: the API server on 6443, admin.conf and
   * the users' kubeconfigs. Without a CA in the user data there is no cluster.
   */
  private async startStudentCluster(
    ns: string,
    name: string,
    rt: VmiRuntime,
    files: UserDataFiles,
    ip: string,
    sandboxRoot: string,
  ): Promise<void> {
    const ca = clusterCaOf(files);
    if (!ca) return;
    const slow = this.faults.slowKubeadmInitMs;
    if (slow > 0) await new Promise((r) => setTimeout(r, slow));
    if (this.stopped || this.runtime.get(`${ns}/${name}`) !== rt) return;
    const env = parseShellEnv(files.get('/etc/labvirt/cluster.env') ?? '');
    const controlPlaneName = controlPlaneNameOf(env);
    const nodeName = rt.nodeName ?? 'control-plane';
    const delays = this.options.studentCluster ?? {
      namespaceDeleteDelayMs: 1_000,
      quotaStatusDelayMs: 300,
    };
    const cluster = await startStudentCluster({
      namespace: ns,
      ca,
      nodeName,
      nodeIp: ip,
      serviceCidr: env.LABVIRT_SERVICE_CIDR ?? '10.95.0.0/16',
      endpoint: `${controlPlaneName}.${ns}.svc.cluster.local`,
      controlPlaneName,
      kubernetesVersion: env.LABVIRT_K8S_MINOR ?? '1.30',
      listen: this.options.listen,
      ...delays,
    });
    if (this.stopped || this.runtime.get(`${ns}/${name}`) !== rt || !rt.guest) {
      await cluster.stop();
      return;
    }
    rt.inner = cluster;
    this.studentClusters.set(ns, cluster);
    this.studentApiByIp.set(ip, cluster);
    await applyWriteFiles(sandboxRoot, [
      { path: '/etc/kubernetes/admin.conf', content: cluster.adminConf, mode: 0o600 },
      { path: '/etc/kubernetes/pki/apiserver.crt', content: cluster.serving.certPem, mode: 0o644 },
      { path: '/etc/kubernetes/pki/apiserver.key', content: cluster.serving.keyPem, mode: 0o600 },
      // control-plane.sh gives both users the admin kubeconfig.
      { path: '/home/labvirt/.kube/config', content: cluster.adminConf, mode: 0o600 },
      { path: '/home/student/.kube/config', content: cluster.adminConf, mode: 0o600 },
    ]).catch(() => undefined);
    // Kubelets that joined earlier (or before a control-plane restart) register again.
    for (const [key, other] of this.runtime) {
      if (other.joined && other.ip && key.startsWith(`${ns}/`))
        cluster.registerNode({
          name: other.nodeName ?? key.slice(ns.length + 1),
          ip: other.ip,
          role: 'worker',
        });
    }
    this.onGuestsChanged();
  }

  private stopStudentCluster(ns: string, rt: VmiRuntime): void {
    const cluster = rt.inner;
    if (!cluster) return;
    rt.inner = undefined;
    if (this.studentClusters.get(ns) === cluster) this.studentClusters.delete(ns);
    for (const [ip, c] of this.studentApiByIp) if (c === cluster) this.studentApiByIp.delete(ip);
    void cluster.stop();
    this.onGuestsChanged();
  }

  /**
   * Tells the env's guests about its current nodes (names, host keys, the
   * env's SSH key, what their network reaches); forgets the env with its last node.
   */
  private async updateEnvNetwork(ns: string): Promise<void> {
    // Stopped, the guests' sandboxes are being removed: a write now would
    // make directories again under the remover (ENOTEMPTY) or after it.
    if (this.stopped) return;
    const members: EnvMember[] = [];
    let controlPlaneName = DEFAULT_CONTROL_PLANE_NAME;
    for (const [key, rt] of this.runtime) {
      if (!key.startsWith(`${ns}/`) || !rt.guest || !rt.sandboxRoot || !rt.listenAddress) continue;
      if (rt.role === 'control-plane') controlPlaneName = rt.controlPlaneName ?? controlPlaneName;
      members.push({
        vmiName: key.slice(ns.length + 1),
        nodeName: rt.nodeName ?? key.slice(ns.length + 1),
        role: rt.role ?? 'worker',
        address: rt.listenAddress,
        sandboxRoot: rt.sandboxRoot,
        guest: rt.guest,
        ...(rt.subdomain ? { subdomain: rt.subdomain } : {}),
      });
    }
    if (members.length === 0) {
      this.envNetworks.delete(ns);
      return;
    }
    let network = this.envNetworks.get(ns);
    if (!network) {
      network = new EnvNetwork(
        ns,
        () => {
          const port = this.studentClusters.get(ns)?.port;
          return port ? { host: this.listenHost, port } : undefined;
        },
        (address) => {
          for (const g of this.guestsByIp.values())
            if (g.namespace === ns && g.listenAddress === address)
              return { host: this.listenHost, port: g.port };
          return undefined;
        },
      );
      this.envNetworks.set(ns, network);
    }
    await network.update(members, controlPlaneName).catch(() => undefined);
  }

  /** One disk per VMI (a containerDisk is ephemeral): a replacement never sees the old one's files. */
  private sandboxOf(ns: string, name: string, uid: string | undefined): string {
    return join(this.options.dataDir, 'guests', ns, `${name}-${uid?.slice(0, 8) ?? 'x'}`);
  }

  private deleteVmi(ns: string, name: string): void {
    this.store.remove('virtualmachineinstances', ns, name);
  }

  private async vmiGone(vmi: Obj): Promise<void> {
    const ns = vmi.metadata.namespace!;
    const name = vmi.metadata.name!;
    const key = `${ns}/${name}`;
    const rt = this.runtime.get(key);
    this.runtime.delete(key);
    if (rt) {
      for (const t of rt.timers) clearTimeout(t);
      if (rt.ip) this.guestsByIp.delete(rt.ip);
      rt.published?.close();
      // A containerDisk is ephemeral: a control plane that comes back runs kubeadm init afresh.
      this.stopStudentCluster(ns, rt);
      if (rt.joined && rt.nodeName) this.studentClusters.get(ns)?.nodeLost(rt.nodeName);
      await rt.guest?.stop();
      await this.updateEnvNetwork(ns);
      this.onGuestsChanged();
    }
    // Only this VMI's launcher: a replacement may already have its own.
    for (const pod of this.store.list('pods', ns)) {
      if (pod.metadata.ownerReferences?.some((o) => o.uid === vmi.metadata.uid))
        this.store.remove('pods', ns, pod.metadata.name!);
    }
    await rm(this.sandboxOf(ns, name, vmi.metadata.uid), {
      recursive: true,
      force: true,
    }).catch(() => undefined);
    // The VM controller replaces a VMI that went away while the VM should run.
    setImmediate(() => this.reconcileVm(ns, name));
  }
}
