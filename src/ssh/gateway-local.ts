import type { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import {
  GatewayRefusal,
  type GatewaySession,
  type LocalChannel,
  type LocalPty,
  type LocalSession,
} from './gateway-api.js';
import { SESSION_NAME, type GatewayLogin } from './gateway-login.js';
import { duplexPair } from './in-process.js';
import { StudentConnection, type ConnectionRules } from './student-connection.js';

/** The audit source of a session opened in the gateway's own process. */
const LOCAL_SOURCE = 'in-process:0';

/**
 * A session of the gateway's own process (the web terminal bridge): the
 * same login check as an SSH client holding the session's key, then a
 * {@link StudentConnection} like an SSH client's, without SSH in between.
 */
export async function openLocalSession(
  rules: ConnectionRules,
  login: GatewayLogin,
  sessionId: string,
): Promise<LocalSession> {
  const closeListeners: ((reason: string) => void)[] = [];
  let closed = false;
  const conn: StudentConnection = new StudentConnection(rules, LOCAL_SOURCE, () => {
    if (closed) return;
    closed = true;
    conn.finish();
    for (const listener of closeListeners.splice(0)) listener(conn.closeMessage);
  });
  const { connId } = conn;
  if (!SESSION_NAME.test(sessionId)) {
    conn.end();
    throw new GatewayRefusal('log in as your session id, e.g. ssh s-abc1234567@<gateway>');
  }
  let s: GatewaySession | undefined;
  try {
    s = await login.lookup(connId, sessionId);
  } catch (err) {
    const message = login.unavailable(err, { connId, sessionId, source: LOCAL_SOURCE });
    conn.end();
    throw new GatewayRefusal(message, true);
  }
  // The caller is trusted with every session's key, as the bridge key is
  // over SSH: it checked the student's own credential (the cookie) first.
  const refusal = login.refusal(sessionId, s, () => true);
  if (refusal !== undefined) {
    login.auditRefused({
      connId,
      sessionId,
      student: s?.student,
      source: LOCAL_SOURCE,
      reason: refusal,
    });
    conn.end();
    throw new GatewayRefusal(refusal);
  }
  // A refusal is given for every missing session: here there is one.
  conn.begin(s!);

  const channel = async (
    type: 'shell' | 'exec',
    open: (c: Client, done: (err: Error | undefined, ch: ClientChannel) => void) => void,
  ): Promise<LocalChannel> => {
    conn.countChannel('session');
    conn.countChannel(type);
    const c = await conn.controlPlane();
    const up = await new Promise<ClientChannel>((resolve, reject) =>
      open(c, (err, ch) => (err ? reject(err) : resolve(ch))),
    );
    return localChannel(conn, up);
  };

  return {
    sessionId,
    shell: (pty) => channel('shell', (c, done) => c.shell(pty ? ptyOptions(pty) : false, done)),
    exec: (command, pty) =>
      channel('exec', (c, done) =>
        // The command goes to the guest verbatim, as an SSH exec would pass it.
        c.exec(command, pty ? { pty: ptyOptions(pty) } : {}, done),
      ),
    jump: async (node, port) => {
      const sock = await conn.jump(node, port);
      // The caller's end counts its bytes as the student's input (the idle timer).
      const [ours, theirs] = duplexPair();
      ours.on('data', (d: Buffer) => conn.input(d.length));
      ours.pipe(sock).pipe(ours);
      sock.on('close', () => ours.destroy());
      sock.on('error', () => ours.destroy());
      ours.on('close', () => sock.destroy());
      return theirs as Duplex;
    },
    onNotice: (listener) => conn.addNoticeSink(listener),
    onClose: (listener) => (closed ? listener(conn.closeMessage) : closeListeners.push(listener)),
    end: () => conn.end(),
  };
}

function ptyOptions(pty: LocalPty) {
  return { term: pty.term, cols: pty.cols, rows: pty.rows, width: 0, height: 0 };
}

/** A channel to the guest whose input counts as the student's activity. */
function localChannel(conn: StudentConnection, up: ClientChannel): LocalChannel {
  let exitCode: number | null = null;
  let closed = false;
  up.on('exit', (code: number | null) => (exitCode = typeof code === 'number' ? code : null));
  up.once('close', () => (closed = true));
  return {
    write(data) {
      conn.input(typeof data === 'string' ? Buffer.byteLength(data) : data.length);
      up.write(data);
    },
    onOutput(listener) {
      // Counted as it is handed on: nothing is read before the caller listens.
      const each = (d: Buffer) => {
        conn.output(d.length);
        listener(d);
      };
      up.on('data', each);
      up.stderr.on('data', each);
    },
    onClose(listener) {
      if (closed) return listener(exitCode);
      up.once('close', () => listener(exitCode));
    },
    pause: () => void up.pause(),
    resume: () => void up.resume(),
    resize: (cols, rows) => up.setWindow(rows, cols, 0, 0),
    close: () => void up.close(),
  };
}
