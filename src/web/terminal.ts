import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from '../log/index.js';
import type { LabvirtService } from '../sessions/types.js';
import { openTerminal, TERMINAL_NODES, type GatewayTarget, type TerminalNode } from './bridge.js';
import type { SessionCookies } from './session-cookie.js';

const TERMINAL_PATH = /^\/s\/(s-[a-z0-9]{10})\/terminal$/;
/** The options of every output frame (one object, not one a keystroke). */
const BINARY_FRAME = { binary: true } as const;
/** Output waiting for a slow browser beyond this pauses the guest shell. */
const HIGH_WATER = 1024 * 1024;

export interface TerminalSocketsOptions {
  server: Server;
  service: LabvirtService;
  cookies: SessionCookies;
  gateway: () => GatewayTarget | undefined;
  audit: Logger;
  now: () => number;
  /** Shells in tmux when the node has it, so they outlive a dropped connection (default true). */
  persistentShells?: boolean;
}

/** Messages the page's script understands (text frames; output is binary). */
export type ServerMessage =
  | { type: 'notice'; text: string }
  /** The shell is gone; `ended` means the session is over and reconnecting is pointless. */
  | { type: 'closed'; reason: string; ended: boolean };

function refuse(socket: Duplex, status: number, text: string) {
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/** Same-origin only: a page elsewhere cannot open a terminal with the student's cookie. */
function sameOrigin(request: IncomingMessage): boolean {
  const origin = request.headers.origin;
  if (!origin) return false;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}

function clampSize(value: string | null, fallback: number, max: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 && n <= max ? n : fallback;
}

/**
 * `GET /s/<session>/terminal?node=…` upgraded to a WebSocket: the student's
 * keystrokes go to a shell opened through the SSH gateway, its output comes
 * back as binary frames.
 */
export function attachTerminalSockets(options: TerminalSocketsOptions): { close(): void } {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    // Keystrokes are a byte or two: compressing them only adds work and delay.
    perMessageDeflate: false,
  });
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const match = TERMINAL_PATH.exec(url.pathname);
      if (!match) return refuse(socket, 404, 'Not Found');
      const sessionId = match[1]!;
      const node = url.searchParams.get('node') as TerminalNode;
      if (!TERMINAL_NODES.includes(node)) return refuse(socket, 400, 'Bad Request');
      if (!sameOrigin(request)) return refuse(socket, 403, 'Forbidden');
      const signedIn = options.cookies.read(request.headers.cookie, sessionId);
      if (!signedIn) return refuse(socket, 401, 'Unauthorized');
      const session = await options.service
        .status(sessionId, signedIn.student)
        .catch(() => undefined);
      if (!session || session.state !== 'active') return refuse(socket, 410, 'Gone');
      if (!session.connection?.nodes.includes(node)) return refuse(socket, 404, 'Not Found');
      const gateway = options.gateway();
      if (!gateway) return refuse(socket, 503, 'Service Unavailable');
      wss.handleUpgrade(request, socket, head, (ws) =>
        serveTerminal(ws, {
          ...options,
          gateway,
          sessionId,
          student: signedIn.student,
          node,
          cols: clampSize(url.searchParams.get('cols'), 80, 500),
          rows: clampSize(url.searchParams.get('rows'), 24, 200),
          resume: url.searchParams.get('resume') === '1',
          source: `${request.socket.remoteAddress}:${request.socket.remotePort}`,
        }),
      );
    })().catch(() => socket.destroy());
  };
  options.server.on('upgrade', onUpgrade);
  return {
    close() {
      options.server.off('upgrade', onUpgrade);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

function serveTerminal(
  ws: WebSocket,
  o: Omit<TerminalSocketsOptions, 'gateway'> & {
    gateway: GatewayTarget;
    sessionId: string;
    student: string;
    node: TerminalNode;
    cols: number;
    rows: number;
    resume: boolean;
    source: string;
  },
) {
  const send = (message: ServerMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  const started = Date.now();
  const opening = openTerminal({
    gateway: o.gateway,
    sessionId: o.sessionId,
    node: o.node,
    cols: o.cols,
    rows: o.rows,
    resume: o.resume,
    persistentShells: o.persistentShells,
  });
  const closeAs = async (reason: string) => {
    const session = await o.service.status(o.sessionId, o.student).catch(() => undefined);
    // Past its end time the session is over, even before the expiry sweep has recorded it.
    const ended =
      session?.state !== 'active' ||
      (session.expiresAt !== undefined && Date.parse(session.expiresAt) <= o.now());
    send({ type: 'closed', reason: ended ? 'your lab session has ended' : reason, ended });
    ws.close(1000);
  };
  // The socket is open before the shell is: what the student types
  // meanwhile waits for the shell's first output (its prompt, or tmux's
  // screen), so no keystroke is lost to a terminal still starting.
  const early: Buffer[] = [];
  let earlyBytes = 0;
  let typeInto: ((bytes: Buffer) => void) | undefined;
  let size: { cols: number; rows: number } | undefined;
  let resize: ((cols: number, rows: number) => void) | undefined;
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data);
    if (isBinary) {
      if (typeInto) typeInto(bytes);
      else if (earlyBytes + bytes.length <= 64 * 1024) {
        early.push(bytes);
        earlyBytes += bytes.length;
      }
      return;
    }
    try {
      const message = JSON.parse(bytes.toString('utf8')) as {
        type?: string;
        cols?: number;
        rows?: number;
      };
      if (message.type === 'resize') {
        size = {
          cols: clampSize(String(message.cols), o.cols, 500),
          rows: clampSize(String(message.rows), o.rows, 200),
        };
        resize?.(size.cols, size.rows);
      }
    } catch {
      /* not a control message: ignored */
    }
  });
  ws.on(
    'close',
    () =>
      void opening.then(
        (t) => t.close(),
        () => undefined,
      ),
  );
  opening.then(
    (terminal) => {
      o.audit.info(
        {
          audit: 'web.terminal.open',
          sessionId: o.sessionId,
          student: o.student,
          node: o.node,
          source: o.source,
        },
        'web terminal opened',
      );
      if (terminal.notice) send({ type: 'notice', text: terminal.notice });
      const forward = (chunk: Buffer) => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(chunk, BINARY_FRAME);
        if (ws.bufferedAmount > HIGH_WATER) {
          terminal.pause();
          const wait = setInterval(() => {
            if (ws.readyState !== ws.OPEN || ws.bufferedAmount < HIGH_WATER / 4) {
              clearInterval(wait);
              terminal.resume();
            }
          }, 20);
        }
      };
      // Every tab shows the gateway's notices alike.
      terminal.onNotice((text) => send({ type: 'notice', text }));
      resize = (cols, rows) => terminal.resize(cols, rows);
      if (size) resize(size.cols, size.rows);
      let first = true;
      const ready = () => {
        if (typeInto) return;
        clearTimeout(readyAnyway);
        typeInto = (bytes) => terminal.write(bytes);
        for (const bytes of early.splice(0)) typeInto(bytes);
      };
      terminal.onOutput((chunk) => {
        forward(chunk);
        if (first) {
          first = false;
          ready();
        }
      });
      // A shell that prints nothing at first still gets the keystrokes.
      const readyAnyway = setTimeout(ready, 2000);
      terminal.onClose((reason) => {
        o.audit.info(
          {
            audit: 'web.terminal.close',
            sessionId: o.sessionId,
            student: o.student,
            node: o.node,
            source: o.source,
            seconds: Math.round((Date.now() - started) / 1000),
            reason,
          },
          'web terminal closed',
        );
        void closeAs(reason);
      });
    },
    (err: Error) => void closeAs(`could not reach your environment: ${err.message}`),
  );
}
