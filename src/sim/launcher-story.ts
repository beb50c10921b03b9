import { EventRecorder } from './events.js';
import { timestamp, type Obj, type ObjectStore } from './store.js';

/**
 * What a user reads about a VM on a real cluster, told by the sim's KubeVirt
 * as it goes: the Events virt-controller, the scheduler, the kubelet and
 * virt-handler record (`kubectl describe vm|vmi|pod`), the launcher pod's
 * own status (scheduled, then Running with its containers ready and the
 * pod IP), and its logs: virt-launcher's JSON lines and the guest's serial
 * console (boot, cloud-init). KubeVirt 1.1+ streams the console from a
 * separate `guest-console-log` container; the sim's launcher pods have no
 * such container (its requests would change what quotas count), so the
 * console is in `compute`'s log, and `?container=guest-console-log` gives
 * it alone.
 */
export const CONSOLE_CONTAINER = 'guest-console-log';

const CONTROLLER = { component: 'virtualmachine-controller' };
const SCHEDULER = { component: 'default-scheduler' };

interface PodLogs {
  compute: string[];
  console: string[];
}

export class LauncherStory {
  private readonly events: EventRecorder;
  /** Log lines per launcher pod (`<ns>/<pod>`), kept while the pod exists. */
  private readonly logs = new Map<string, PodLogs>();
  /** Warnings already told, so a retry loop does not repeat them. */
  private readonly told = new Set<string>();

  constructor(private readonly store: ObjectStore) {
    this.events = new EventRecorder(store);
    store.onChange((e) => {
      if (e.resource === 'pods' && e.type === 'DELETED')
        this.logs.delete(`${e.object.metadata.namespace}/${e.object.metadata.name}`);
    });
  }

  private peek(plural: string, obj: Obj): Obj | undefined {
    return this.store.peek(plural, obj.metadata.namespace, obj.metadata.name ?? '');
  }

  private logsOf(pod: Obj): PodLogs {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    let l = this.logs.get(key);
    if (!l) this.logs.set(key, (l = { compute: [], console: [] }));
    return l;
  }

  private launcherLog(pod: Obj, msg: string, extra: Record<string, unknown> = {}): void {
    this.logsOf(pod).compute.push(
      JSON.stringify({
        component: 'virt-launcher',
        level: 'info',
        msg,
        ...extra,
        timestamp: new Date().toISOString(),
      }),
    );
  }

  vmStarted(vm: Obj, vmi: Obj): void {
    this.events.record(
      vm,
      'Normal',
      'SuccessfulCreate',
      `Started the virtual machine by creating the new virtual machine instance ${vmi.metadata.name}`,
      CONTROLLER,
    );
  }

  vmStopped(vm: Obj, vmi: Obj): void {
    this.events.record(
      vm,
      'Normal',
      'SuccessfulDelete',
      `Stopped the virtual machine by deleting the virtual machine instance ${vmi.metadata.uid}`,
      CONTROLLER,
    );
  }

  podCreated(vmi: Obj, pod: Obj): void {
    this.told.delete(`create/${vmi.metadata.uid}`);
    this.events.record(
      vmi,
      'Normal',
      'SuccessfulCreate',
      `Created virtual machine pod ${pod.metadata.name}`,
      CONTROLLER,
    );
    this.launcherLog(pod, 'Collected all requested hook sidecar sockets');
  }

  podCreateFailed(vmi: Obj, reason: string): void {
    const key = `create/${vmi.metadata.uid}`;
    if (this.told.has(key)) return;
    this.told.add(key);
    this.events.record(vmi, 'Warning', 'FailedCreate', `Error creating pod: ${reason}`, CONTROLLER);
  }

  podUnschedulable(podRef: Obj, message: string): void {
    const pod = this.peek('pods', podRef);
    if (!pod) return;
    const key = `schedule/${pod.metadata.uid}`;
    if (this.told.has(key)) return;
    this.told.add(key);
    this.events.record(pod, 'Warning', 'FailedScheduling', message, SCHEDULER);
  }

  podScheduled(podRef: Obj, node: string): void {
    const pod = this.peek('pods', podRef);
    if (!pod) return;
    this.told.delete(`schedule/${pod.metadata.uid}`);
    this.events.record(
      pod,
      'Normal',
      'Scheduled',
      `Successfully assigned ${pod.metadata.namespace}/${pod.metadata.name} to ${node}`,
      SCHEDULER,
    );
    const next = structuredClone(pod);
    next.spec = { ...(next.spec as Record<string, unknown>), nodeName: node };
    next.status = {
      phase: 'Pending',
      conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: timestamp() }],
    };
    this.store.update('pods', next);
  }

  /** The containers started and the domain booted: pod Running, VMI started. */
  booted(vmi: Obj, podRef: Obj, ip: string, node: string): void {
    const pod = this.peek('pods', podRef);
    if (!pod) return;
    const kubelet = { component: 'kubelet', host: node };
    const containers = ((pod.spec as { containers?: { name: string; image: string }[] })
      .containers ?? []) as { name: string; image: string }[];
    for (const c of containers) {
      this.events.record(
        pod,
        'Normal',
        'Pulled',
        `Container image "${c.image}" already present on machine`,
        kubelet,
      );
      this.events.record(pod, 'Normal', 'Created', `Created container ${c.name}`, kubelet);
      this.events.record(pod, 'Normal', 'Started', `Started container ${c.name}`, kubelet);
    }
    const at = timestamp();
    const next = structuredClone(pod);
    next.status = {
      phase: 'Running',
      hostIP: '192.168.0.10',
      podIP: ip,
      podIPs: [{ ip }],
      startTime: at,
      conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({
        type,
        status: 'True',
        lastTransitionTime: at,
      })),
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: at } },
      })),
    };
    this.store.update('pods', next);
    const handler = { component: 'virt-handler', host: node };
    this.events.record(vmi, 'Normal', 'Created', 'VirtualMachineInstance defined.', handler);
    this.events.record(vmi, 'Normal', 'Started', 'VirtualMachineInstance started.', handler);
    this.launcherLog(pod, 'Domain defined.', { kind: 'Domain', name: vmi.metadata.name });
    this.launcherLog(pod, 'Domain started.', { kind: 'Domain', name: vmi.metadata.name });
    const name = vmi.metadata.name ?? 'vm';
    this.logsOf(pod).console.push(
      `[    0.000000] Linux version 5.15.0-labvirt-sim (sim@labvirt) #1 SMP`,
      `[    1.204311] Run /sbin/init as init process`,
      `cloud-init[412]: Cloud-init v. 24.1 running 'init-local' at ${new Date().toUTCString()}. Up 2.31 seconds.`,
      `cloud-init[455]: Cloud-init v. 24.1 running 'init' at ${new Date().toUTCString()}. Up 3.02 seconds.`,
      `cloud-init[455]: ci-info: | eth0 | True | ${ip} | 255.255.255.0 | global |`,
      `cloud-init[520]: Cloud-init v. 24.1 running 'modules:config' at ${new Date().toUTCString()}. Up 4.48 seconds.`,
      `${name} login:`,
    );
  }

  /** cloud-init's final stage ended (the readiness marker is written). */
  bootstrapped(podRef: Obj): void {
    const pod = this.peek('pods', podRef);
    if (!pod) return;
    this.logsOf(pod).console.push(
      `cloud-init[731]: Cloud-init v. 24.1 running 'modules:final' at ${new Date().toUTCString()}.`,
      `cloud-init[731]: Cloud-init v. 24.1 finished at ${new Date().toUTCString()}. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].`,
    );
  }

  /** `pods/log`: undefined when the container is not one the pod has. */
  log(pod: Obj, container: string | undefined): string | undefined {
    const names = ((pod.spec as { containers?: { name: string }[] }).containers ?? []).map(
      (c) => c.name,
    );
    const which = container ?? names[0];
    const lines = this.logs.get(`${pod.metadata.namespace}/${pod.metadata.name}`);
    if (which === CONSOLE_CONTAINER) return (lines?.console ?? []).map((l) => `${l}\n`).join('');
    if (!which || !names.includes(which)) return undefined;
    if (which !== 'compute') return '';
    return [...(lines?.compute ?? []), ...(lines?.console ?? [])].map((l) => `${l}\n`).join('');
  }
}
