import { connect, createServer, type Server as NetServer } from 'node:net';
import ssh2 from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import {
  GUEST_KEX,
  HostKeyMismatchError,
  createExecutor,
  startGateway,
  type Executor,
  type Gateway,
  type GuestResolver,
} from '../../src/ssh/index.js';
import { openTerminal } from '../../src/web/bridge.js';
import { GuestFarm, connectClient, newKey, run } from '../sim-guest/fixtures.js';

/**
 * What labvirt offers a guest in its key exchange, read off the wire: the
 * KEXINIT packets are sent before any key exists, so a relay between
 * labvirt and the guest sees both sides' lists in clear.
 */
interface KexInit {
  kex: string[];
  serverHostKey: string[];
}

/** The first KEXINIT after the identification line, or undefined while incomplete. */
function parseKexInit(bytes: Buffer): KexInit | undefined {
  const eol = bytes.indexOf('\r\n');
  if (eol < 0 || bytes.length < eol + 2 + 5) return undefined;
  let at = eol + 2;
  const packetLength = bytes.readUInt32BE(at);
  if (bytes.length < at + 4 + packetLength) return undefined;
  at += 4 + 1; // length, padding length
  if (bytes[at] !== 20) throw new Error(`not a KEXINIT: message ${bytes[at]}`);
  at += 1 + 16; // type, cookie
  const lists: string[][] = [];
  for (let i = 0; i < 2; i++) {
    const n = bytes.readUInt32BE(at);
    lists.push(
      bytes
        .subarray(at + 4, at + 4 + n)
        .toString('latin1')
        .split(','),
    );
    at += 4 + n;
  }
  return { kex: lists[0] as string[], serverHostKey: lists[1] as string[] };
}

/** The key exchange both sides end up with: the client's first that the server offers (RFC 4253 7.1). */
function agreed(client: KexInit, server: KexInit): string | undefined {
  return client.kex.find((k) => server.kex.includes(k));
}

interface Tap {
  resolve: GuestResolver;
  /** Puts a relay in front of the guest at `ip` (before anything connects to it). */
  add(ip: string): Promise<void>;
  /** Each connection's KEXINITs, labvirt's and the guest's, in the order connections were made. */
  seen: { client?: KexInit; server?: KexInit }[];
}

const relays: NetServer[] = [];

/** A resolver that puts a relay in front of every guest `inner` resolves. */
async function tap(inner: GuestResolver): Promise<Tap> {
  const seen: Tap['seen'] = [];
  const ports = new Map<string, number>();
  const relayTo = async (host: string, port: number) => {
    const relay = createServer((down) => {
      const record: Tap['seen'][number] = {};
      seen.push(record);
      const up = connect(port, host);
      const sniff = (side: 'client' | 'server') => {
        let bytes = Buffer.alloc(0);
        return (chunk: Buffer) => {
          if (record[side]) return;
          bytes = Buffer.concat([bytes, chunk]);
          record[side] = parseKexInit(bytes);
        };
      };
      down.on('data', sniff('client'));
      up.on('data', sniff('server'));
      down.pipe(up).pipe(down);
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    relays.push(relay);
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    return (relay.address() as { port: number }).port;
  };
  // The resolver is synchronous: relays are made beforehand, by `add`.
  const resolver = ((ip: string, port: number) => {
    const to = inner(ip, port);
    const relayPort = ports.get(`${to.host}:${to.port}`);
    if (relayPort === undefined) throw new Error(`no relay for ${ip}:${port}`);
    return { host: '127.0.0.1', port: relayPort };
  }) as GuestResolver;
  return {
    seen,
    resolve: resolver,
    async add(ip: string) {
      const to = inner(ip, 22);
      ports.set(`${to.host}:${to.port}`, await relayTo(to.host, to.port));
    },
  };
}

const farm = new GuestFarm();
const executors: Executor[] = [];
const gateways: Gateway[] = [];
const servers: ssh2.Server[] = [];
afterEach(async () => {
  for (const e of executors.splice(0)) await e.close();
  for (const g of gateways.splice(0)) await g.close();
  for (const s of servers.splice(0)) s.close();
  for (const r of relays.splice(0)) r.close();
  await farm.stopAll();
});

const envKey = newKey();
const hostKey = newKey();
const target = (ip: string) => ({ envId: 'env00001', node: 'control-plane' as const, ip });

function pinnedExecutor(resolve: GuestResolver) {
  const ex = createExecutor({
    identity: async () => ({
      privateKey: envKey.private,
      publicKey: envKey.public.trim(),
      hostKeys: { 'control-plane': hostKey.public.trim() },
    }),
    resolve,
    connectRetry: { attempts: 1, initialDelayMs: 10, maxDelayMs: 10 },
  });
  executors.push(ex);
  return ex;
}

/** A guest sshd whose key exchange is curve25519 alone (as a hardened sshd_config may have it). */
async function curve25519OnlyGuest(key: string): Promise<number> {
  const login = (ssh2.utils.parseKey(envKey.public) as ssh2.ParsedKey).getPublicSSH();
  const server = new ssh2.Server(
    { hostKeys: [key], algorithms: { kex: ['curve25519-sha256'] } },
    (client) => {
      client.on('authentication', (ctx) =>
        ctx.method === 'publickey' && ctx.key.data.equals(login) ? ctx.accept() : ctx.reject(),
      );
      client.on('ready', () =>
        client.on('session', (accept) =>
          accept().on('exec', (acceptExec) => {
            const stream = acceptExec();
            stream.on('data', () => undefined);
            stream.on('end', () => {
              stream.write('reached\n');
              stream.exit(0);
              stream.end();
            });
          }),
        ),
      );
      client.on('error', () => undefined);
    },
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

/** A gateway whose connections to the guest go through a tap, with one session on one node. */
async function tappedGateway(opts: {
  sessionId: string;
  sessionKey: string;
  clientKey: string;
  node: { node: 'control-plane' | 'worker-1'; ip: string };
  hostKey?: string;
}): Promise<{ t: Tap; gw: Gateway }> {
  const t = await tap(farm.resolve);
  await t.add(opts.node.ip);
  const gw = await startGateway({
    hostKey: opts.hostKey ?? newKey().private,
    host: '127.0.0.1',
    port: 0,
    clientKey: opts.clientKey,
    resolve: t.resolve,
    directory: {
      lookup: async (id) =>
        id === opts.sessionId
          ? {
              sessionId: id,
              student: 'ada',
              envId: 'env00001',
              expiresAt: new Date(Date.now() + 3600_000),
              publicKeys: [opts.sessionKey],
              nodes: [{ ...opts.node, hostKey: hostKey.public.trim() }],
            }
          : undefined,
    },
  });
  gateways.push(gw);
  return { t, gw };
}

/** The one connection the tap saw offered labvirt's key exchange and the pinned key type, and got P-256. */
function expectGuestOffer(t: Tap): void {
  expect(t.seen).toHaveLength(1);
  const { client, server } = t.seen[0]!;
  expect(client?.kex.slice(0, 3)).toEqual([...GUEST_KEX]);
  expect(client?.serverHostKey).toEqual(['ssh-ed25519']);
  expect(agreed(client!, server!)).toBe('ecdh-sha2-nistp256');
}

describe("labvirt's key exchange with guests", () => {
  it('offers P-256 first, curve25519 after it, and only the pinned host key type; a guest agrees on P-256', async () => {
    const g = await farm.start({ labvirt: [envKey.public] }, { hostKey: hostKey.private });
    const t = await tap(farm.resolve);
    await t.add(g.ip);
    const r = await pinnedExecutor(t.resolve).exec(target(g.ip), 'echo ok', { timeoutMs: 10_000 });
    expect(r.stdout).toBe('ok\n');
    expect(t.seen).toHaveLength(1);
    const { client, server } = t.seen[0]!;
    // ssh2 appends its extension and strict-kex markers (the Terrapin fix) after ours.
    expect(client?.kex).toEqual([
      'ecdh-sha2-nistp256',
      'curve25519-sha256',
      'curve25519-sha256@libssh.org',
      'ext-info-c',
      'kex-strict-c-v00@openssh.com',
    ]);
    expect(client?.serverHostKey).toEqual(['ssh-ed25519']);
    expect(agreed(client!, server!)).toBe('ecdh-sha2-nistp256');
  });

  it('falls back to curve25519 with a guest that allows nothing else, and still requires the pinned host key', async () => {
    const port = await curve25519OnlyGuest(hostKey.private);
    const ex = pinnedExecutor(() => ({ host: '127.0.0.1', port }));
    const r = await ex.exec(target('10.244.9.1'), 'true', { timeoutMs: 10_000 });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'reached\n' });

    const impostorPort = await curve25519OnlyGuest(newKey().private);
    const other = pinnedExecutor(() => ({ host: '127.0.0.1', port: impostorPort }));
    await expect(other.exec(target('10.244.9.2'), 'true', { timeoutMs: 10_000 })).rejects.toThrow(
      HostKeyMismatchError,
    );
  });

  it("offers the same on the gateway's hop to a student's control plane", async () => {
    const gatewayClientKey = newKey();
    const studentKey = newKey();
    const g = await farm.start(
      { labvirt: [envKey.public], student: [studentKey.public, gatewayClientKey.public] },
      { hostKey: hostKey.private },
    );
    const { t, gw } = await tappedGateway({
      sessionId: 's-kex0000001',
      sessionKey: studentKey.public,
      clientKey: gatewayClientKey.private,
      node: { node: 'control-plane', ip: g.ip },
    });
    const c = await connectClient({
      port: gw.port,
      username: 's-kex0000001',
      privateKey: studentKey.private,
    });
    try {
      expect(await run(c, 'echo hop')).toMatchObject({ stdout: 'hop\n', code: 0 });
    } finally {
      c.end();
    }
    expectGuestOffer(t);
  });
  it("offers the same on the web terminal's hop to a worker (the bridge's own login there)", async () => {
    const bridgeKey = newKey();
    const gatewayClientKey = newKey();
    // The worker trusts only its env's key; the bridge logs in with it over a jump.
    const w = await farm.start(
      { labvirt: [envKey.public], student: [envKey.public] },
      { hostKey: hostKey.private },
    );
    const gatewayHostKey = newKey();
    const { t, gw } = await tappedGateway({
      sessionId: 's-kex0000002',
      sessionKey: bridgeKey.public,
      clientKey: gatewayClientKey.private,
      node: { node: 'worker-1', ip: w.ip },
      hostKey: gatewayHostKey.private,
    });
    const terminal = await openTerminal({
      gateway: {
        host: '127.0.0.1',
        port: gw.port,
        privateKey: bridgeKey.private,
        hostPublicKey: gatewayHostKey.public.trim(),
        guestIdentity: async () => ({
          privateKey: envKey.private,
          hostKeys: { 'worker-1': hostKey.public.trim() },
        }),
      },
      sessionId: 's-kex0000002',
      node: 'worker-1',
      cols: 80,
      rows: 24,
      resume: false,
      persistentShells: false,
    });
    // The shell is up (it answered), then closed before the guest is stopped.
    const answered = new Promise<void>((r) => terminal.onOutput(() => r()));
    terminal.write(Buffer.from('echo up\n'));
    await answered;
    const closed = new Promise<string>((r) => terminal.onClose(r));
    terminal.close();
    await closed;
    // The gateway only relays the jump: what the tap saw is the bridge's own offer.
    expectGuestOffer(t);
  });
});
