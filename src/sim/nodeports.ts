import { connect, createServer, type Server, type Socket } from 'node:net';
import { evaluateNetworkPolicies, selectorMatches, type NetworkPolicyLike } from '../kube/index.js';
import type { GuestResolver } from '../ssh/index.js';
import type { Obj, ObjectStore } from './store.js';

interface ServicePort {
  protocol?: string;
  port?: number;
  nodePort?: number;
  targetPort?: number | string;
}

interface Listening {
  servers: Server[];
}

/**
 * kube-proxy for the host cluster's NodePort and LoadBalancer Services: each
 * TCP node port listens on every node's (loopback) address and forwards a
 * connection to one ready endpoint — a pod the selector matches that has an
 * IP — at the target port, reached through the guest address map (a guest's
 * pod IP and port → the loopback address its own listener binds). The env's
 * NetworkPolicies are enforced for the client's address, so a port that no
 * policy opens refuses the connection. UDP and SCTP ports are allocated but
 * not forwarded.
 */
export class NodePortProxy {
  private readonly byService = new Map<string, Map<number, Listening>>();
  private readonly sockets = new Set<Socket>();
  private roundRobin = 0;
  private stopped = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly nodeAddresses: string[],
    private readonly resolveGuest: GuestResolver,
  ) {
    store.onChange((e) => {
      if (e.resource !== 'services' || this.stopped) return;
      const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
      this.reconcile(key, e.type === 'DELETED' ? undefined : e.object);
    });
  }

  private reconcile(key: string, svc: Obj | undefined): void {
    const spec = svc?.spec as { type?: string; ports?: ServicePort[] } | undefined;
    const exposed = spec?.type === 'NodePort' || spec?.type === 'LoadBalancer';
    const wanted = new Set(
      exposed
        ? (spec?.ports ?? [])
            .filter((p) => (p.protocol ?? 'TCP') === 'TCP' && p.nodePort)
            .map((p) => p.nodePort!)
        : [],
    );
    const current = this.byService.get(key) ?? new Map<number, Listening>();
    for (const [nodePort, listening] of current) {
      if (wanted.has(nodePort)) continue;
      for (const s of listening.servers) s.close();
      current.delete(nodePort);
    }
    for (const nodePort of wanted) {
      if (current.has(nodePort)) continue;
      current.set(nodePort, { servers: this.listen(key, nodePort) });
    }
    if (current.size > 0) this.byService.set(key, current);
    else this.byService.delete(key);
  }

  private listen(key: string, nodePort: number): Server[] {
    return this.nodeAddresses.map((address) => {
      const server = createServer((sock) => this.forward(key, nodePort, sock));
      // A port taken by something else on this machine: that node cannot serve it.
      server.on('error', () => undefined);
      server.listen(nodePort, address);
      return server;
    });
  }

  /** The connection goes where kube-proxy would send it, read from the Service as it is now. */
  private forward(key: string, nodePort: number, sock: Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const target = this.pickEndpoint(key, nodePort, sock.remoteAddress ?? '');
    if (!target) {
      sock.destroy();
      return;
    }
    let to: { host: string; port: number };
    try {
      to = this.resolveGuest(target.ip, target.port);
    } catch {
      sock.destroy();
      return;
    }
    const upstream = connect(to.port, to.host);
    // kube-proxy's path holds no bytes; a relay with Nagle's algorithm on
    // would hold an app's second small write up to 40 ms.
    sock.setNoDelay(true);
    upstream.setNoDelay(true);
    this.sockets.add(upstream);
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      sock.destroy();
    });
    upstream.on('error', () => sock.destroy());
    sock.on('close', () => upstream.destroy());
    sock.pipe(upstream).pipe(sock);
  }

  private pickEndpoint(
    key: string,
    nodePort: number,
    clientIp: string,
  ): { ip: string; port: number } | undefined {
    const [namespace, name] = key.split('/') as [string, string];
    const svc = this.store.peek('services', namespace, name);
    const spec = svc?.spec as { selector?: Record<string, string>; ports?: ServicePort[] };
    const port = spec?.ports?.find((p) => p.nodePort === nodePort);
    if (!spec?.selector || !port) return undefined;
    const targetPort =
      typeof port.targetPort === 'number' ? port.targetPort : (port.port ?? undefined);
    if (targetPort === undefined) return undefined;
    const nsLabels = this.store.peek('namespaces', undefined, namespace)?.metadata.labels ?? {};
    const policies = this.store.list('networkpolicies', namespace) as NetworkPolicyLike[];
    const endpoints = this.store.list('pods', namespace).filter((pod) => {
      const status = pod.status as { podIP?: string; phase?: string } | undefined;
      if (!status?.podIP || status.phase !== 'Running' || pod.metadata.deletionTimestamp)
        return false;
      if (!selectorMatches({ matchLabels: spec.selector }, pod.metadata.labels ?? {})) return false;
      // An ingress the env's policies do not open is dropped on the way in.
      return evaluateNetworkPolicies(policies, {
        from: { ip: clientIp.replace(/^::ffff:/, '') },
        to: {
          namespace,
          namespaceLabels: nsLabels,
          podLabels: pod.metadata.labels ?? {},
          ip: status.podIP,
        },
        port: targetPort,
        protocol: 'TCP',
      }).allowed;
    });
    if (endpoints.length === 0) return undefined;
    const pod = endpoints[this.roundRobin++ % endpoints.length]!;
    return { ip: (pod.status as { podIP: string }).podIP, port: targetPort };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const closing: Promise<void>[] = [];
    for (const ports of this.byService.values())
      for (const l of ports.values())
        for (const s of l.servers) closing.push(new Promise((r) => s.close(() => r())));
    this.byService.clear();
    for (const s of this.sockets) s.destroy();
    await Promise.all(closing);
  }
}
