/**
 * What one SSH connection and one command cost labvirt's process in CPU
 * (run: `npx tsx bench/ssh-cost.bench.ts`): the floor under "labvirt CPU per
 * claim", which connects to each of an env's three nodes (warm envs hold no
 * connection) and runs about five commands (the key install on every node,
 * the lab's setup, the tool inventory). The SSH server runs in a child
 * process and answers every command at once without starting a process, so
 * only the client side (ssh2, as src/ssh's executor uses it: ed25519 keys
 * prepared once, the host key checked, a 10 KiB bundle sent on stdin) is in
 * the figure. BENCH_CONNECTIONS (default 100) connections one after another,
 * each with one command; then BENCH_COMMANDS (default 200) commands on one
 * connection.
 * The connections are made two ways, alternating in rounds so a change in
 * the machine's load falls on both: with the algorithms the executor offers
 * (src/ssh/algorithms.ts: P-256 key exchange first) and with ssh2's default
 * key exchange (curve25519, what the executor offered before 2026-12-06).
 * Then the parts of a handshake's CPU, each timed alone in this process with
 * the calls ssh2 makes (BENCH_PARTS=0 leaves them out).
 */
import { fork } from 'node:child_process';
import {
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  sign,
} from 'node:crypto';
import { createRequire } from 'node:module';
import ssh2, { type Algorithms, type Client as ClientType, type PublicKeyAuthMethod } from 'ssh2';
import { guestAlgorithms } from '../src/ssh/algorithms.js';
import { generateKeyPair } from '../src/ssh/keys.js';
import { preparedSigningKey } from '../src/ssh/key-objects.js';
import { result } from './lib.js';
import { serveSshStub } from './ssh-stub.js';

const { Client, utils } = ssh2;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const COMMANDS = Number(process.env.BENCH_COMMANDS ?? 200);
const PARTS = process.env.BENCH_PARTS !== '0';
/** About what the executor sends per command (makeBundle pads to a 10 KiB tar record). */
const BUNDLE = Buffer.alloc(10_240, 1);

if (process.argv[2] === '--server') {
  serveSshStub();
} else {
  const child = fork(process.argv[1]!, ['--server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port, hostKey } = await new Promise<{ port: number; hostKey: string }>((resolve) =>
    child.once('message', (m) => resolve(m as { port: number; hostKey: string })),
  );
  const expected = (utils.parseKey(hostKey) as ssh2.ParsedKey).getPublicSSH();
  const clientKey = generateKeyPair().private;

  const auth: PublicKeyAuthMethod = {
    type: 'publickey',
    username: 'labvirt',
    key: preparedSigningKey(clientKey, 'the bench key'),
  };
  /** The executor's offer, and the one before it (ssh2's default key exchange, curve25519 first). */
  const WAYS: Record<'now' | 'before', Algorithms> = {
    now: guestAlgorithms(hostKey),
    before: { serverHostKey: ['ssh-ed25519'] },
  };
  const connect = (way: keyof typeof WAYS = 'now') =>
    new Promise<ClientType>((resolve, reject) => {
      const c = new Client();
      c.once('ready', () => resolve(c));
      c.once('error', reject);
      c.connect({
        host: '127.0.0.1',
        port,
        username: 'labvirt',
        authHandler: [auth],
        algorithms: WAYS[way],
        keepaliveInterval: 15_000,
        hostVerifier: (key: Buffer) => key.equals(expected),
      });
    });
  const command = (c: ClientType) =>
    new Promise<void>((resolve, reject) =>
      c.exec('true', (err, stream) => {
        if (err) return reject(err);
        stream.on('data', () => undefined);
        stream.on('close', () => resolve());
        stream.end(BUNDLE);
      }),
    );
  const cpuMs = (since: NodeJS.CpuUsage) => {
    const u = process.cpuUsage(since);
    return (u.user + u.system) / 1000;
  };

  // Warm-up: the first connection pays for loading and compiling ssh2's code.
  for (const way of ['now', 'before'] as const) {
    const first = await connect(way);
    await command(first);
    first.end();
  }

  // Both ways in alternating rounds, so a change in the machine's load falls on both.
  const spent = { now: 0, before: 0 };
  const ROUNDS = 10;
  for (let round = 0; round < ROUNDS; round++) {
    for (const way of round % 2 ? (['before', 'now'] as const) : (['now', 'before'] as const)) {
      const t = process.cpuUsage();
      for (let i = 0; i < CONNECTIONS / ROUNDS; i++) {
        const c = await connect(way);
        await command(c);
        c.end();
      }
      spent[way] += cpuMs(t);
    }
  }
  const perConnection = spent.now / CONNECTIONS;
  const perConnectionBefore = spent.before / CONNECTIONS;

  const held = await connect();
  const t = process.cpuUsage();
  for (let i = 0; i < COMMANDS; i++) await command(held);
  const perCommand = cpuMs(t) / COMMANDS;
  held.end();
  child.kill();

  const handshake = Math.max(0, perConnection - perCommand);
  const handshakeBefore = Math.max(0, perConnectionBefore - perCommand);
  console.log(
    `ssh cost: a connection with one command ${perConnection.toFixed(2)} ms of CPU with the executor's algorithms (P-256 key exchange), ${perConnectionBefore.toFixed(2)} ms with ssh2's default (curve25519) (÷ ${(perConnection / perConnectionBefore).toFixed(2)}; ${CONNECTIONS} each, alternating), a command on an open connection ${perCommand.toFixed(2)} ms (${COMMANDS}); the handshake alone ≈ ${handshake.toFixed(2)} ms (${handshakeBefore.toFixed(2)} before, ÷ ${(handshake / handshakeBefore).toFixed(2)})`,
  );
  if (PARTS) parts();
  result({
    what: "labvirt's CPU for SSH per claim: 3 connections + 5 commands, the server answering at once",
    figure: `${(3 * handshake + 5 * perCommand).toFixed(1)} ms (handshake ${handshake.toFixed(2)} ms, command ${perCommand.toFixed(2)} ms; ${(3 * handshakeBefore + 5 * perCommand).toFixed(1)} ms with curve25519, same run)`,
  });
  process.exit(0);
}

/**
 * The cryptography in one client handshake, each part timed alone with the
 * calls ssh2 1.17 makes (lib/protocol/kex.js, keyParser.js): what is left
 * of a handshake's CPU beside them is ssh2's JavaScript, the socket's system
 * calls (on loopback, the receiving side's TCP work too) and GC.
 */
function parts(): void {
  // ssh2 is CommonJS: its internal key parser is reached as a file (read, not patched).
  const { parseDERKey } = createRequire(import.meta.url)('ssh2/lib/protocol/keyParser.js') as {
    parseDERKey: (data: Buffer, type: string) => ssh2.ParsedKey;
  };
  const N = 500;
  const microseconds = (f: () => unknown) => {
    for (let i = 0; i < 50; i++) f();
    const t = process.cpuUsage();
    for (let i = 0; i < N; i++) f();
    const u = process.cpuUsage(t);
    return (u.user + u.system) / N;
  };
  const x25519Peer = generateKeyPairSync('x25519').publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const p256Peer = createECDH('prime256v1');
  const p256PeerPublic = p256Peer.generateKeys();
  const host = utils.parseKey(generateKeyPair().private) as ssh2.ParsedKey;
  const hostBlob = host.getPublicSSH();
  const hash = randomBytes(32);
  const hostSignature = host.sign(hash) as Buffer;
  const login = createPrivateKey(host.getPrivatePEM());
  const rows: [string, number][] = [
    [
      // A key pair made, its public half exported as DER, the guest's imported from DER.
      'curve25519 (ssh2: OpenSSL key objects)',
      microseconds(() => {
        const keys = generateKeyPairSync('x25519');
        keys.publicKey.export({ type: 'spki', format: 'der' });
        diffieHellman({
          privateKey: keys.privateKey,
          publicKey: createPublicKey({ key: x25519Peer, type: 'spki', format: 'der' }),
        });
      }),
    ],
    [
      'P-256 (ssh2: createECDH, raw points)',
      microseconds(() => {
        const ecdh = createECDH('prime256v1');
        ecdh.generateKeys();
        ecdh.computeSecret(p256PeerPublic);
      }),
    ],
    [
      // Parsed from the wire and checked through PEM text at every handshake.
      'host key signature check (ssh2: ed25519 via PEM)',
      microseconds(() => {
        const parsed = parseDERKey(hostBlob.subarray(4 + 11), 'ssh-ed25519');
        if (parsed.verify(hash, hostSignature) !== true) throw new Error('bad signature');
      }),
    ],
    ['login signature (ed25519, key prepared once)', microseconds(() => sign(null, hash, login))],
  ];
  console.log(
    `ssh cost, parts of a handshake (µs of CPU each, ${N} times alone): ${rows.map(([what, us]) => `${what} ${us.toFixed(0)}`).join('; ')}`,
  );
}
