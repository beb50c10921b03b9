import { Writable } from 'node:stream';
import { pino } from 'pino';
import ssh2, { type ParsedKey } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvIdentities, envNamespace, readEnvSecrets } from '../../src/kube/index.js';
import { envNodes, nodesOfFlavor } from '../../src/pool/nodes.js';
import {
  HostKeyMismatchError,
  generateKeyPair,
  publicLine,
  startGateway,
  type GatewaySession,
} from '../../src/ssh/index.js';
import type { SessionView } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/**
 * The attacks of issue #11 on the addresses and keys labvirt trusts,
 * performed against a whole labvirt (real Redis, the simulator, real SSH to
 * its guests): a student with root in their VM forges the address its guest
 * agent reports; an address that now leads to another env's guest; one
 * env's orchestrator key tried on another env.
 */
describe('addresses and keys labvirt trusts', () => {
  let stack: TestStack;
  let alice: SessionView & { privateKey?: string };
  let bob: SessionView & { privateKey?: string };

  const namespaceOf = (s: SessionView) => envNamespace(stack.labvirt.context.config, s.envId!);
  /** The control plane's address as the host's CNI gave it (its launcher pod). */
  const controlPlaneIp = async (s: SessionView) => {
    const ctx = stack.labvirt.context;
    const [node] = await envNodes(
      ctx.cluster,
      namespaceOf(s),
      nodesOfFlavor(ctx.config, 'v1.30-1node'),
    );
    return node!.ip;
  };

  /** Logs in through labvirt's gateway as the student would, runs `command`, returns its output. */
  const throughGateway = (
    s: SessionView & { privateKey?: string },
    command: string,
    port = stack.labvirt.gatewayPort!,
  ) =>
    new Promise<string>((resolve, reject) => {
      const client = new ssh2.Client();
      client.once('error', reject);
      client.once('ready', () => {
        client.exec(command, (err, stream) => {
          if (err) return reject(err);
          let out = '';
          stream.on('data', (d: Buffer) => (out += d.toString()));
          stream.stderr.on('data', (d: Buffer) => (out += d.toString()));
          stream.on('close', () => {
            client.end();
            resolve(out);
          });
        });
      });
      client.connect({
        host: '127.0.0.1',
        port,
        username: s.id,
        privateKey: s.privateKey!,
        readyTimeout: 20_000,
      });
    });

  /** An SSH login straight to a guest's sshd (as a key thief inside the host network would try). */
  const loginTo = (ip: string, username: string, privateKey: string) =>
    new Promise<void>((resolve, reject) => {
      const to = stack.sim.resolveGuest(ip, 22);
      const client = new ssh2.Client();
      client.once('error', reject);
      client.once('ready', () => {
        client.end();
        resolve();
      });
      client.connect({ host: to.host, port: to.port, username, privateKey, readyTimeout: 10_000 });
    });

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.fillPool('v1.30-1node', 2, { timeoutMs: 90_000 });
    const { service } = stack.labvirt;
    const [a, b] = await Promise.all([
      service.start({ student: 'alice', labId: 'fixture-one' }),
      service.start({ student: 'bob', labId: 'fixture-one' }),
    ]);
    alice = { ...(await stack.untilSession(a.id, 'active', 60_000)), privateKey: a.privateKey };
    bob = { ...(await stack.untilSession(b.id, 'active', 60_000)), privateKey: b.privateKey };
    expect(alice.envId).not.toBe(bob.envId);
  }, 150_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it("ignores the address a guest agent reports: labvirt and the gateway still reach the student's own node", async () => {
    const bobIp = await controlPlaneIp(bob);
    const aliceIp = await controlPlaneIp(alice);
    // Alice, root in her VM, makes its guest agent report Bob's address.
    stack.sim.faults.reportGuestAddress(namespaceOf(alice), 'control-plane', bobIp);
    const ctx = stack.labvirt.context;
    await stack.until(async () => {
      const vmi = (await ctx.cluster.custom.getNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: namespaceOf(alice),
        plural: 'virtualmachineinstances',
        name: 'control-plane',
      })) as { status?: { interfaces?: { ipAddress?: string }[] } };
      return vmi.status?.interfaces?.[0]?.ipAddress === bobIp;
    }, 'the forged address on the VMI');
    expect(await controlPlaneIp(alice)).toBe(aliceIp);

    // The gateway takes Alice to her own node (her env's namespace in its cluster.env).
    const where = await throughGateway(
      alice,
      'cat "${LABVIRT_GUEST_ROOT:-}/etc/labvirt/cluster.env"',
    );
    expect(where).toContain(`LABVIRT_ENV_NAMESPACE='${namespaceOf(alice)}'`);
    expect(where).not.toContain(namespaceOf(bob));
    // labvirt's own commands (checks, setup) run there too.
    const ran = await ctx.executor.exec(
      { envId: alice.envId!, node: 'control-plane', ip: await controlPlaneIp(alice) },
      'cat "${LABVIRT_GUEST_ROOT:-}/etc/labvirt/cluster.env"',
      { timeoutMs: 10_000 },
    );
    expect(ran.stdout).toContain(`LABVIRT_ENV_NAMESPACE='${namespaceOf(alice)}'`);
  }, 60_000);

  it("refuses an address that now leads to another env's guest (host key pinned per env and node), audits it and reports the env broken", async () => {
    const ctx = stack.labvirt.context;
    const bobIp = await controlPlaneIp(bob);
    const before = stack.events.length;
    // Alice's node's address, stale or recycled: it is Bob's guest that answers there.
    const attempt = ctx.executor.exec(
      { envId: alice.envId!, node: 'control-plane', ip: bobIp },
      'echo reached',
      { timeoutMs: 10_000 },
    );
    await expect(attempt).rejects.toBeInstanceOf(HostKeyMismatchError);
    await expect(attempt).rejects.toThrow(/host key of control-plane .* changed/);
    await stack.until(
      async () =>
        stack.events
          .slice(before)
          .some(
            (e) => e.type === 'env.failed' && e.envId === alice.envId && /host key/.test(e.reason),
          ),
      'the env reported broken',
    );
    // The right address still works: nothing was re-learned from the impostor.
    const ok = await ctx.executor.exec(
      { envId: alice.envId!, node: 'control-plane', ip: await controlPlaneIp(alice) },
      'echo reached',
      { timeoutMs: 10_000 },
    );
    expect(ok.stdout.trim()).toBe('reached');
  }, 60_000);

  it("the gateway refuses to take a student to another env's guest at their node's old address, and audits it", async () => {
    const ctx = stack.labvirt.context;
    const bobIp = await controlPlaneIp(bob);
    const audit: Record<string, unknown>[] = [];
    const auditLog = pino(
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of chunk.toString().split('\n').filter(Boolean))
            audit.push(JSON.parse(line) as Record<string, unknown>);
          cb();
        },
      }),
    );
    // A directory that still holds Alice's node (with the host key recorded
    // for it) at an address Bob's guest now has.
    const identities = new EnvIdentities(ctx.cluster, (id) => envNamespace(ctx.config, id));
    const { hostKeys } = await identities.get(alice.envId!);
    const stale: GatewaySession = {
      sessionId: alice.id,
      student: 'alice',
      envId: alice.envId!,
      expiresAt: new Date(Date.now() + 600_000),
      publicKeys: [publicLine(ssh2.utils.parseKey(alice.privateKey!) as ParsedKey)],
      nodes: [{ node: 'control-plane', ip: bobIp, hostKey: hostKeys['control-plane'] }],
    };
    const gateway = await startGateway({
      hostKey: generateKeyPair().private,
      host: '127.0.0.1',
      port: 0,
      directory: { lookup: async (id) => (id === alice.id ? stale : undefined) },
      // The host key is checked before any key is offered: this one opens nothing.
      clientKey: generateKeyPair().private,
      resolve: stack.sim.resolveGuest,
      audit: auditLog,
    });
    try {
      const out = await throughGateway(alice, 'echo reached', gateway.port);
      expect(out).not.toContain('reached');
      expect(out).toMatch(/could not reach your environment: host key of control-plane/);
      expect(audit).toContainEqual(
        expect.objectContaining({
          audit: 'ssh.hostkey.mismatch',
          envId: alice.envId,
          node: 'control-plane',
          ip: bobIp,
        }),
      );
    } finally {
      await gateway.close();
    }
  }, 60_000);

  it("refuses one env's orchestrator key in another env, through real SSH to the guests", async () => {
    const ctx = stack.labvirt.context;
    const aliceSecrets = await readEnvSecrets(ctx.cluster, namespaceOf(alice));
    const bobSecrets = await readEnvSecrets(ctx.cluster, namespaceOf(bob));
    expect(aliceSecrets!.sshKey.publicKey).not.toBe(bobSecrets!.sshKey.publicKey);
    const bobIp = await controlPlaneIp(bob);
    // Alice read her env's key (it is on her VMs' `labvirt` account's side only as a public key,
    // but assume she got the private half): Bob's guest refuses it, as labvirt and as student.
    for (const user of ['labvirt', 'student']) {
      await expect(loginTo(bobIp, user, aliceSecrets!.sshKey.privateKey)).rejects.toThrow(
        /authentication/i,
      );
    }
    // Bob's own env key opens Bob's guest: the refusal above is about the key, not the path.
    await expect(loginTo(bobIp, 'labvirt', bobSecrets!.sshKey.privateKey)).resolves.toBeUndefined();
    // labvirt itself uses each env's own identity.
    const identities = new EnvIdentities(ctx.cluster, (id) => envNamespace(ctx.config, id));
    expect((await identities.get(bob.envId!)).publicKey).toBe(bobSecrets!.sshKey.publicKey);
  }, 60_000);
});
