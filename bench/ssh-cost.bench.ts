/**
 * What one SSH connection and one command cost labvirt's process in CPU
 * (run: `npx tsx bench/ssh-cost.bench.ts`): the floor under "labvirt CPU per
 * claim", which connects to each of an env's three nodes (warm envs hold no
 * connection) and runs about five commands (the key install on every node,
 * the lab's setup, the tool inventory). The SSH server runs in a child
 * process and answers every command at once without starting a process, so
 * only the client side (ssh2, as src/ssh's executor uses it: ed25519 keys,
 * the host key checked, a 10 KiB bundle sent on stdin) is in the figure.
 * BENCH_CONNECTIONS (default 100) connections one after another, each with
 * one command; then BENCH_COMMANDS (default 200) commands on one connection.
 * The connections are made twice, alternating in rounds: with the login key
 * handed to ssh2 as text (ssh2 parses it and OpenSSL decodes it at every
 * signature) and prepared once as the executor does (src/ssh/key-objects.ts).
 */
import { fork } from 'node:child_process';
import ssh2, { type Client as ClientType, type PublicKeyAuthMethod } from 'ssh2';
import { preparedSigningKey } from '../src/ssh/key-objects.js';
import { result } from './lib.js';

const { Client, Server, utils } = ssh2;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const COMMANDS = Number(process.env.BENCH_COMMANDS ?? 200);
/** About what the executor sends per command (makeBundle pads to a 10 KiB tar record). */
const BUNDLE = Buffer.alloc(10_240, 1);

if (process.argv[2] === '--server') {
  const hostKey = utils.generateKeyPairSync('ed25519');
  const server = new Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('authentication', (ctx) =>
      ctx.method === 'publickey' ? ctx.accept() : ctx.reject(),
    );
    client.on('ready', () =>
      client.on('session', (accept) =>
        accept().on('exec', (acceptExec) => {
          const stream = acceptExec();
          stream.on('data', () => undefined);
          stream.on('end', () => {
            stream.exit(0);
            stream.end();
          });
        }),
      ),
    );
    client.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    process.send!({ port, hostKey: hostKey.public });
  });
} else {
  const child = fork(process.argv[1]!, ['--server'], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port, hostKey } = await new Promise<{ port: number; hostKey: string }>((resolve) =>
    child.once('message', (m) => resolve(m as { port: number; hostKey: string })),
  );
  const expected = (utils.parseKey(hostKey) as ssh2.ParsedKey).getPublicSSH();
  const clientKey = utils.generateKeyPairSync('ed25519').private;

  const auth: PublicKeyAuthMethod = {
    type: 'publickey',
    username: 'labvirt',
    key: preparedSigningKey(clientKey, 'the bench key'),
  };
  const connect = (keyAs: 'text' | 'prepared' = 'prepared') =>
    new Promise<ClientType>((resolve, reject) => {
      const c = new Client();
      c.once('ready', () => resolve(c));
      c.once('error', reject);
      c.connect({
        host: '127.0.0.1',
        port,
        username: 'labvirt',
        ...(keyAs === 'text' ? { privateKey: clientKey } : { authHandler: [auth] }),
        algorithms: { serverHostKey: ['ssh-ed25519'] },
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
  const first = await connect();
  await command(first);
  first.end();

  // Both ways in alternating rounds, so a change in the machine's load falls on both.
  const spent = { text: 0, prepared: 0 };
  const ROUNDS = 10;
  for (let round = 0; round < ROUNDS; round++) {
    for (const keyAs of ['text', 'prepared'] as const) {
      const t = process.cpuUsage();
      for (let i = 0; i < CONNECTIONS / ROUNDS; i++) {
        const c = await connect(keyAs);
        await command(c);
        c.end();
      }
      spent[keyAs] += cpuMs(t);
    }
  }
  const perConnection = spent.prepared / CONNECTIONS;
  const perConnectionText = spent.text / CONNECTIONS;

  const held = await connect();
  const t = process.cpuUsage();
  for (let i = 0; i < COMMANDS; i++) await command(held);
  const perCommand = cpuMs(t) / COMMANDS;
  held.end();
  child.kill();

  const handshake = Math.max(0, perConnection - perCommand);
  console.log(
    `ssh cost: a connection with one command ${perConnection.toFixed(2)} ms of CPU with the key prepared once, ${perConnectionText.toFixed(2)} ms with the key as text (÷ ${(perConnection / perConnectionText).toFixed(2)}; ${CONNECTIONS} each, alternating), a command on an open connection ${perCommand.toFixed(2)} ms (${COMMANDS}); the handshake alone ≈ ${handshake.toFixed(2)} ms`,
  );
  result({
    what: "labvirt's CPU for SSH per claim: 3 connections + 5 commands, the server answering at once",
    figure: `${(3 * handshake + 5 * perCommand).toFixed(1)} ms (handshake ${handshake.toFixed(2)} ms, command ${perCommand.toFixed(2)} ms)`,
  });
  process.exit(0);
}
