import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { generateKeyPair } from '../ssh/index.js';
import type { Guest } from './guest/index.js';

/** One running node of an env, as its guests see it. */
export interface EnvMember {
  vmiName: string;
  nodeName: string;
  role: 'control-plane' | 'worker';
  /** The loopback address standing for its interface (its name resolves to it in the env). */
  address: string;
  sandboxRoot: string;
  guest: Guest;
  /** The VMI's `spec.subdomain` (labvirt's `nodes`): the node is also `<node>.<subdomain>.<ns>.svc`. */
  subdomain?: string;
}

/** The student users of a node, who get the env's key (as bootstrap gives it on a real VM). */
const KEY_USERS = ['student', 'labvirt'];

/**
 * What a real env's nodes share on their network, given to sim guests:
 * every node's name in `/etc/hosts` (and the control plane's Service name
 * from admin.conf), the nodes' SSH host keys in `/etc/ssh/ssh_known_hosts`,
 * a per-env key for the `student` (and `labvirt`) user so `ssh worker-1`
 * works between the env's nodes, and, in each sandboxed guest's network,
 * listeners at every node's address on 22 and at the control plane's on
 * 6443 (and its own 127.0.0.1:6443) leading to those nodes' sshd and the
 * student API server. Nothing else outside the guest is reachable from it.
 */
export class EnvNetwork {
  private readonly key = generateKeyPair();

  constructor(
    private readonly namespace: string,
    /** The student API server of this env, while it runs. */
    private readonly studentApi: () => { host: string; port: number } | undefined,
    /** The sshd of the env's node at `address`, while it runs. */
    private readonly sshdAt: (address: string) => { host: string; port: number } | undefined,
  ) {}

  /** The update being written, which the next one waits for. */
  private writing: Promise<void> = Promise.resolve();

  /**
   * Brings every member's files and listeners up to date with the env's
   * current nodes. Updates are written one after another: the nodes of an
   * env start together, and an update with fewer nodes that finished its
   * writes after a later one would leave a node's /etc/hosts without a peer.
   */
  update(members: EnvMember[], controlPlaneName: string): Promise<void> {
    const next = this.writing.then(() => this.write(members, controlPlaneName));
    this.writing = next.catch(() => undefined);
    return next;
  }

  private async write(members: EnvMember[], controlPlaneName: string): Promise<void> {
    const hosts = this.hostsFile(members, controlPlaneName);
    const knownHosts = members
      .map(
        (m) =>
          `${[m.nodeName, m.vmiName, m.address].filter(unique).join(',')} ${m.guest.hostPublicKey}`,
      )
      .join('\n');
    const controlPlane = members.find((m) => m.role === 'control-plane');
    for (const member of members) {
      const root = member.sandboxRoot;
      await put(root, '/etc/hosts', hosts);
      await put(root, '/etc/ssh/ssh_known_hosts', `${knownHosts}\n`);
      await put(
        root,
        '/etc/ssh/ssh_config',
        'Host *\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /etc/ssh/ssh_known_hosts\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n',
      );
      for (const user of KEY_USERS) await this.giveKey(root, user);
      for (const peer of members) {
        member.guest.allowOutbound(peer.address, 22, () => this.sshdAt(peer.address));
      }
      if (controlPlane) {
        member.guest.allowOutbound(controlPlane.address, 6443, this.studentApi);
        if (member === controlPlane) member.guest.allowOutbound('127.0.0.1', 6443, this.studentApi);
      }
    }
  }

  /**
   * What the host's DNS answers a real guest: every node under its VMI's
   * subdomain (a headless Service of that name, labvirt's `nodes`), and the
   * control plane under the name its cluster.env gives (`control-plane.nodes`;
   * `control-plane`, a Service of its own, in envs made before labvirt folded
   * it into `nodes`).
   */
  private hostsFile(members: EnvMember[], controlPlaneName: string): string {
    const lines = ['127.0.0.1 localhost'];
    for (const m of members) {
      const names = [m.nodeName, m.vmiName];
      const qualified = m.subdomain ? [`${m.nodeName}.${m.subdomain}`] : [];
      if (m.role === 'control-plane') qualified.push(controlPlaneName);
      for (const name of qualified) {
        names.push(`${name}.${this.namespace}.svc.cluster.local`, `${name}.${this.namespace}.svc`);
      }
      lines.push(`${m.address} ${names.filter(unique).join(' ')}`);
    }
    return `${lines.join('\n')}\n`;
  }

  private async giveKey(root: string, user: string): Promise<void> {
    const ssh = join(root, 'home', user, '.ssh');
    await mkdir(ssh, { recursive: true, mode: 0o700 });
    await writeFile(join(ssh, 'id_ed25519'), this.key.private, { mode: 0o600 });
    await writeFile(join(ssh, 'id_ed25519.pub'), `${this.key.public}\n`, { mode: 0o644 });
    const authorized = join(ssh, 'authorized_keys');
    const current = await readFile(authorized, 'utf8').catch(() => '');
    if (!current.split('\n').includes(this.key.public)) {
      await appendFile(
        authorized,
        `${current && !current.endsWith('\n') ? '\n' : ''}${this.key.public}\n`,
        {
          mode: 0o600,
        },
      );
    }
  }
}

async function put(root: string, path: string, content: string): Promise<void> {
  const file = join(root, path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
}

function unique(value: string, index: number, all: string[]): boolean {
  return all.indexOf(value) === index;
}

/**
 * A guest's own port as a host address: a listener on the host at the
 * guest's loopback address and `port` whose connections go, through the
 * guest's sandbox, to what listens there inside the guest. (A sandboxed
 * guest's listeners are in its own network namespace, which the host's
 * NodePort forwarding and address map cannot reach directly.)
 */
export class PublishedPorts {
  private readonly servers = new Map<number, Server>();

  constructor(
    private readonly address: string,
    private readonly guest: Guest,
  ) {}

  /**
   * Starts listening at once (the bind happens before any connection the
   * caller opens next), so the address can be handed out synchronously.
   */
  publish(port: number): { host: string; port: number } {
    if (!this.servers.has(port)) {
      const server = createServer({ pauseOnConnect: true }, (outside: Socket) => {
        outside.on('error', () => undefined);
        this.guest.connect(port).then(
          (inside) => {
            // A relay standing for the network: no Nagle on either side (it
            // would hold a reply's second small write up to 40 ms).
            outside.setNoDelay(true);
            inside.setNoDelay(true);
            inside.on('error', () => undefined);
            outside.on('close', () => inside.destroy());
            inside.on('close', () => outside.destroy());
            outside.pipe(inside).pipe(outside);
            outside.resume();
            inside.resume();
          },
          () => outside.destroy(),
        );
      });
      server.on('error', () => this.servers.delete(port));
      server.listen(port, this.address);
      server.unref();
      this.servers.set(port, server);
    }
    return { host: this.address, port };
  }

  close(): void {
    for (const server of this.servers.values()) server.close();
    this.servers.clear();
  }
}
