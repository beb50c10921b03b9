import ssh2 from 'ssh2';
import { generateKeyPair } from '../src/ssh/index.js';

const { Server } = ssh2;

/**
 * The SSH server the SSH benches measure against, run in a child process of
 * their own (`<bench> --server`): it accepts any public key and answers
 * every command at once, after reading its stdin to the end, without
 * starting a process, so only the client's side is in a figure. Tells the
 * parent its port and host key over IPC. `noDelay` turns Nagle's algorithm
 * off on its connections, as the simulator's guests do.
 */
export function serveSshStub(options: { noDelay: boolean } = { noDelay: false }): void {
  const hostKey = generateKeyPair();
  const server = new Server({ hostKeys: [hostKey.private] }, (client) => {
    if (options.noDelay)
      (client as typeof client & { setNoDelay(on: boolean): void }).setNoDelay(true);
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
}
