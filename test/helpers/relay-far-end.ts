import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import type { ServerChannel } from 'ssh2';
import { RELAY_SCRIPT } from '../../src/sync/student.js';

/**
 * A test sshd's end of labvirt's two ways to a student API server, with the
 * guest's 127.0.0.1:6443 standing for `apiPort` on this machine: a
 * direct-tcpip channel piped to it (`sync.apiTls: labvirt`), and the relay
 * (`guest`) run by this machine's bash and openssl, its 6443 rewritten.
 */
export function pipeToApi(channel: ServerChannel, apiPort: number): void {
  const upstream = netConnect(apiPort, '127.0.0.1');
  // Either end closing closes the other; errors after that are expected.
  upstream.on('error', () => channel.destroy()).on('close', () => channel.destroy());
  channel.on('error', () => upstream.destroy()).on('close', () => upstream.destroy());
  channel.pipe(upstream).pipe(channel);
}

/** Runs RELAY_SCRIPT on `channel` (stdin, stdout, stderr, exit status), with `path` as the guest's PATH. */
export function runRelay(channel: ServerChannel, apiPort: number, path = process.env.PATH): void {
  const script = RELAY_SCRIPT.replace('127.0.0.1:6443', `127.0.0.1:${apiPort}`);
  const child = spawn('/bin/bash', ['-c', script], {
    stdio: 'pipe',
    env: { ...process.env, PATH: path ?? '' },
  });
  channel.pipe(child.stdin);
  child.stdin.on('error', () => undefined);
  child.stdout.pipe(channel, { end: false });
  child.stderr.pipe(channel.stderr);
  child.on('close', (code) => {
    channel.exit(code ?? 1);
    channel.end();
  });
  channel.on('close', () => child.kill('SIGHUP'));
}
