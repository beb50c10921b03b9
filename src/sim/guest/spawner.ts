import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

/**
 * Guests' commands are started by one small, long-lived helper process per
 * simulator instead of by the simulator itself. Starting a process from the
 * simulator (a large heap, thousands of sockets) costs far more than
 * starting it from a process that holds almost nothing, and it made the
 * benches measure the simulator rather than labvirt.
 *
 * The helper spawns each command with pipes and hands the three pipe ends
 * to the simulator over its IPC channel (Node passes them as sockets), so
 * the command's input and output never pass through the helper; it then
 * reports the exit. Process groups are signalled directly by pid.
 *
 * A sandboxed guest has a helper of its own, in its namespaces. With
 * `idleStopMs` an idle one is let go (see HELPER and startSpawner) and the
 * next request starts another: 3,000 idle guests must not hold 3,000 Node
 * processes.
 */
const HELPER = `
const { spawn } = require('node:child_process');
const { readdirSync } = require('node:fs');
const net = require('node:net');
const listeners = new Map();
// Sends whose handle may still be queued, commands not yet exited, connects
// not yet answered: while any is left the helper is busy.
let sending = 0;
let commands = 0;
let connecting = 0;
// The simulator may have let go of this helper (or exited) while a command's
// exit is still being reported: with nobody left to tell, a failed send is
// dropped rather than thrown (an unhandled EPIPE printed on the simulator's
// stderr).
function send(message, handle) {
  if (!process.connected) return;
  sending++;
  process.send(message, handle, undefined, () => sending--);
}
function spawnCommand(m) {
  let child;
  try {
    child = spawn(m.file, m.args, { cwd: m.cwd, env: m.env, detached: true, stdio: 'pipe' });
  } catch (err) {
    send({ op: 'error', id: m.id, message: err.message });
    return;
  }
  child.on('error', (err) => send({ op: 'error', id: m.id, message: err.message }));
  if (child.pid === undefined) return;
  commands++;
  // Node starts reading a child's output at once; stop before the first byte
  // arrives (it cannot before this tick ends), so every byte stays in the
  // pipe for the simulator.
  const pipes = [child.stdin, child.stdout, child.stderr];
  for (const out of [child.stdout, child.stderr]) {
    out._handle.reading = false;
    out._handle.readStop();
  }
  // At the child's exit Node destroys its stdin and resumes its output; the
  // pipe ends belong to the simulator, and may still wait in the queue of
  // handles to send (one at a time), so the ChildProcess must let go of them.
  child.stdin = child.stdout = child.stderr = null;
  child.stdio.fill(null);
  send({ op: 'spawned', id: m.id, pid: child.pid });
  pipes.forEach((pipe, fd) => send({ op: 'stdio', id: m.id, fd }, pipe));
  child.on('exit', (code, signal) => {
    commands--;
    send({ op: 'exit', id: m.id, code, signal });
  });
}
// Network operations run here so that, in a sandbox, they happen inside the
// guest's own network namespace; the connected sockets are handed over.
function connectTo(m) {
  const socket = net.connect(m.port, m.host);
  connecting++;
  let answered = false;
  const answer = (message, handle) => {
    if (answered) return;
    answered = true;
    connecting--;
    send(message, handle);
  };
  // Paused before it connects: no byte is read here, all stay for the simulator.
  socket.pause();
  socket.once('connect', () => answer({ op: 'connected', id: m.id }, socket));
  socket.once('error', (err) => answer({ op: 'error', id: m.id, message: err.message }));
}
function listenOn(m) {
  const key = m.host + ':' + m.port;
  if (listeners.has(key)) return;
  const server = net.createServer({ pauseOnConnect: true }, (socket) =>
    send({ op: 'accepted', host: m.host, port: m.port }, socket),
  );
  binding++;
  const bound = () => {
    binding--;
    if (binding === 0) for (const spawnMessage of held.splice(0)) spawnCommand(spawnMessage);
  };
  server.once('listening', bound);
  server.on('error', () => {
    if (!server.listening && listeners.get(key) === server) bound();
    listeners.delete(key);
  });
  server.listen(m.port, m.host);
  listeners.set(key, server);
}
// A helper started again is told to listen where the last one did, then to
// run the command that woke it: that command may connect there at once, so
// commands wait until every listener is bound.
let binding = 0;
const held = [];
// With an idle limit (argv[1], ms), the helper asks the simulator to let it
// go once nothing has happened in the guest for that long. Nothing may be
// left behind: a process of the guest (a student's tmux server, a nohup job)
// lives in this PID namespace, which ends with the helper, so its /proc
// must show no process but bwrap's init (1) and this one. The simulator
// decides (it alone knows whether a request to this helper is on its way)
// and disconnects it; it asks again after each idle period while kept.
const idleMs = Number(process.argv[1] ?? 0);
let lastBusy = Date.now();
function othersAlive() {
  for (const name of readdirSync('/proc')) {
    if (name !== '1' && name !== String(process.pid) && /^[0-9]+$/.test(name)) return true;
  }
  return false;
}
if (idleMs > 0) {
  setInterval(() => {
    const now = Date.now();
    if (sending > 0 || commands > 0 || connecting > 0 || binding > 0 || othersAlive()) {
      lastBusy = now;
    } else if (now - lastBusy >= idleMs) {
      lastBusy = now;
      send({ op: 'idle' });
    }
  }, Math.max(200, Math.min(idleMs / 4, 5000))).unref();
}
process.on('message', (m) => {
  lastBusy = Date.now();
  if (m.op === 'spawn') {
    if (binding > 0) held.push(m);
    else spawnCommand(m);
  }
  else if (m.op === 'connect') connectTo(m);
  else if (m.op === 'listen') listenOn(m);
  else if (m.op === 'kill') {
    try {
      process.kill(-m.pid, m.signal);
    } catch {
      /* already gone */
    }
  }
});
process.on('disconnect', () => process.exit(0));
`;

type HelperMessage =
  | { op: 'spawned'; id: number; pid: number }
  | { op: 'stdio'; id: number; fd: 0 | 1 | 2 }
  | { op: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null }
  | { op: 'connected'; id: number }
  | { op: 'accepted'; id?: undefined; host: string; port: number }
  | { op: 'error'; id: number; message: string }
  | { op: 'idle'; id?: undefined };

export interface SpawnOptions {
  cwd: string;
  env: Record<string, string>;
}

/**
 * A command started by the helper, shaped like the parts of ChildProcess the
 * guest uses: `stdin`/`stdout`/`stderr` once `ready`, then `close` with the
 * exit code or signal once it exited and its output is drained.
 */
export class SpawnedCommand extends EventEmitter {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  stdin?: Socket;
  stdout?: Socket;
  stderr?: Socket;
  private exited = false;
  private openOutputs = 2;

  /** `signalGroup` reaches the command's process group (its pid may be another PID namespace's). */
  constructor(private readonly signalGroup: (pid: number, signal: NodeJS.Signals) => void) {
    super();
  }

  /** @internal */
  handle(message: HelperMessage, socket?: Socket): void {
    switch (message.op) {
      case 'spawned':
        this.pid = message.pid;
        break;
      case 'stdio':
        if (!socket) break;
        if (message.fd === 0) {
          this.stdin = socket;
        } else {
          if (message.fd === 1) this.stdout = socket;
          else this.stderr = socket;
          socket.once('close', () => {
            this.openOutputs--;
            this.maybeClose();
          });
        }
        if (this.stdin && this.stdout && this.stderr) this.emit('ready');
        break;
      case 'exit':
        this.exitCode = message.code;
        this.signalCode = message.signal;
        this.exited = true;
        this.maybeClose();
        break;
      case 'error':
        // Only a command still starting has someone waiting for its error.
        if (this.listenerCount('error') > 0) this.emit('error', new Error(message.message));
        this.emit('close', this.exitCode ?? 127, this.signalCode);
        break;
    }
  }

  private maybeClose(): void {
    if (!this.exited || this.openOutputs > 0) return;
    this.stdin?.destroy();
    this.emit('close', this.exitCode, this.signalCode);
  }

  /** Signals the command's whole process group (it runs detached, as its own group). */
  killGroup(signal: NodeJS.Signals): void {
    if (this.pid === undefined || this.exited) return;
    this.signalGroup(this.pid, signal);
  }
}

export interface Spawner {
  spawn(file: string, args: string[], options: SpawnOptions): Promise<SpawnedCommand>;
  /** A TCP connection opened by the helper (in a sandbox: from inside the guest's network). */
  connect(host: string, port: number): Promise<Socket>;
  /**
   * The helper listens at host:port (in a sandbox: inside the guest's
   * network) and hands each connection, paused, to `onConnection`.
   */
  listen(host: string, port: number, onConnection: (socket: Socket) => void): void;
  /**
   * Lets the helper go, and resolves once it has exited: in a sandbox every
   * process of the guest dies with it, so nothing writes in the guest's
   * files after this (a test removing them met ENOTEMPTY).
   */
  stop(): Promise<void>;
}

/** How long stop() waits for the helper to go before killing it. */
const HELPER_EXIT_WAIT_MS = 2_000;

/** How the helper is started: by default plain Node; a sandbox wraps it (e.g. in bwrap). */
export interface HelperLaunch {
  file: string;
  args: string[];
  env: Record<string, string>;
  /**
   * The descriptor (3 is the IPC channel, so 4 or more) on which the launcher
   * writes bwrap's `--info-fd` report. Its `child-pid` is the sandbox's PID 1
   * seen from here, which outlives the launcher: bwrap exits as soon as its
   * command does, while that init stays until every other process of the
   * sandbox is gone (a student's nohup job) and is only then killed by
   * `--die-with-parent`. stop() waits for it too, so nothing of the guest runs
   * after stop().
   */
  infoFd?: number;
}

function plainLaunch(): HelperLaunch {
  // Plain JavaScript: none of the simulator's loaders (e.g. tsx through NODE_OPTIONS).
  return {
    file: process.execPath,
    args: ['-e', HELPER],
    env: { ...(process.env as Record<string, string>), NODE_OPTIONS: '' },
  };
}

/** The helper's source, for a launcher that runs it elsewhere (`node -e <source>`). */
export const HELPER_SOURCE = HELPER;

export interface SpawnerOptions {
  /**
   * Let the helper go after this long with nothing running in it (see
   * HELPER); it is started again by the next spawn, connect or listen. Only
   * for a helper alone in its own PID namespace (a sandbox): elsewhere it
   * sees the host's processes and never goes. 0 or unset: it stays.
   */
  idleStopMs?: number;
  /** @internal For tests: the helper asked to go; called before the spawner decides. */
  onIdleRequest?: () => void;
  /** @internal For tests: the spawner let an idle helper go. */
  onIdleStop?: () => void;
}

interface Helper {
  child: ChildProcess;
  /** Resolves once the helper and, in a sandbox, every process of the sandbox are gone. */
  gone: Promise<void>;
  /** Commands and connects sent to this helper and not finished. */
  running: Map<number, SpawnedCommand>;
  connecting: Map<number, { resolve: (s: Socket) => void; reject: (e: Error) => void }>;
}

/** Starts the helper process. It ends with the simulator (its IPC channel closes). */
export function startSpawner(
  launch: () => HelperLaunch = plainLaunch,
  options: SpawnerOptions = {},
): Spawner {
  const idleStopMs = Math.max(0, Math.round(options.idleStopMs ?? 0));
  let current: Helper | undefined;
  let nextId = 1;
  /**
   * A stopped spawner starts no helper again: a sandboxed helper's bwrap
   * makes mount points inside the guest's root, and a late command or
   * listen (a published port, a network update) after the guest stopped
   * did that under a simulator removing the sandbox (ENOTEMPTY).
   */
  let stopped = false;
  const refused = () => Promise.reject(new Error('the guest is stopped'));
  /** Helpers let go while idle and maybe still exiting: stop() waits for them too. */
  const leaving = new Set<Promise<void>>();
  const listening = new Map<
    string,
    { host: string; port: number; onConnection: (s: Socket) => void }
  >();

  function ensureHelper(): Helper {
    if (current && current.child.connected) return current;
    const how = launch();
    const stdio: ('ignore' | 'inherit' | 'ipc' | 'pipe')[] = ['ignore', 'ignore', 'inherit', 'ipc'];
    if (how.infoFd !== undefined) {
      while (stdio.length < how.infoFd) stdio.push('ignore');
      stdio[how.infoFd] = 'pipe';
    }
    const child = spawn(how.file, idleStopMs > 0 ? [...how.args, String(idleStopMs)] : how.args, {
      stdio,
      env: how.env,
    });
    // Each helper answers for what was sent to it: one that went (idle, or
    // died) fails only its own commands, never those of the helper after it.
    const h: Helper = {
      child,
      gone: helperGone(child, how.infoFd),
      running: new Map(),
      connecting: new Map(),
    };
    child.on('message', (message: HelperMessage, socket?: Socket) => {
      if (message.op === 'idle') {
        options.onIdleRequest?.();
        // Every request to a helper is answered after any message it sent
        // before reading that request: a command or connect sent since it
        // asked is still unanswered here, so it is kept. Listeners are not
        // a reason to stay: the next helper is told to listen again.
        if (current !== h || h.running.size > 0 || h.connecting.size > 0) return;
        current = undefined;
        leaving.add(h.gone);
        void h.gone.then(() => leaving.delete(h.gone));
        child.disconnect();
        options.onIdleStop?.();
        return;
      }
      if (message.op === 'accepted') {
        const l = listening.get(`${message.host}:${message.port}`);
        if (l && socket) l.onConnection(socket);
        else socket?.destroy();
        return;
      }
      const pending = h.connecting.get(message.id);
      if (pending) {
        h.connecting.delete(message.id);
        if (message.op === 'connected' && socket) pending.resolve(socket);
        else pending.reject(new Error(message.op === 'error' ? message.message : 'no connection'));
        return;
      }
      const command = h.running.get(message.id);
      if (!command) {
        socket?.destroy();
        return;
      }
      command.handle(message, socket);
    });
    child.on('error', () => undefined);
    child.on('exit', () => {
      for (const command of h.running.values()) {
        command.handle({ op: 'error', id: 0, message: 'the simulator spawner exited' });
      }
      h.running.clear();
      for (const pending of h.connecting.values())
        pending.reject(new Error('the simulator spawner exited'));
      h.connecting.clear();
      if (current === h) current = undefined;
    });
    // The helper must never keep the simulator's process alive.
    child.unref();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    current = h;
    // A helper started again (it died, or went idle) listens again where the last one did.
    for (const l of listening.values()) child.send({ op: 'listen', host: l.host, port: l.port });
    return h;
  }

  return {
    spawn(file, args, options) {
      if (stopped) return refused();
      const id = nextId++;
      const h = ensureHelper();
      const command = new SpawnedCommand((pid, signal) => {
        if (h.child.connected) h.child.send({ op: 'kill', pid, signal });
      });
      h.running.set(id, command);
      // Not at 'exit': Node's IPC lets a message without a handle overtake
      // the pipe ends still on their way.
      command.once('close', () => h.running.delete(id));
      return new Promise((resolve, reject) => {
        const fail = (err: Error) => reject(err);
        command.once('error', fail);
        command.once('ready', () => {
          command.off('error', fail);
          resolve(command);
        });
        h.child.send({ op: 'spawn', id, file, args, cwd: options.cwd, env: options.env });
      });
    },
    connect(host, port) {
      if (stopped) return refused();
      const id = nextId++;
      const h = ensureHelper();
      return new Promise((resolve, reject) => {
        h.connecting.set(id, { resolve, reject });
        h.child.send({ op: 'connect', id, host, port });
      });
    },
    listen(host, port, onConnection) {
      if (stopped) return;
      const key = `${host}:${port}`;
      if (listening.has(key)) return;
      listening.set(key, { host, port, onConnection });
      if (current?.child.connected) current.child.send({ op: 'listen', host, port });
      // Without an idle stop the helper starts with the guest, as it always
      // did (off the claim's path). With one, a helper that is not running
      // listens when it starts: waking it only to listen, in a guest nobody
      // uses, would undo the stop.
      else if (idleStopMs === 0) ensureHelper();
    },
    async stop() {
      stopped = true;
      const h = current;
      current = undefined;
      if (h) {
        const { child } = h;
        if (child.connected) child.disconnect();
        const late = setTimeout(() => child.kill('SIGKILL'), HELPER_EXIT_WAIT_MS);
        await h.gone;
        clearTimeout(late);
      }
      await Promise.all(leaving);
    },
  };
}

/**
 * Resolves once the helper has exited and, when its launcher reports a
 * sandbox's PID 1 on `infoFd`, once that init is gone too: the kernel ends
 * an init only after every other process of its PID namespace.
 */
async function helperGone(child: ChildProcess, infoFd: number | undefined): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const info = infoFd === undefined ? undefined : (child.stdio[infoFd] as Readable | null);
  if (!info) return exited;
  const report = new Promise<string>((resolve) => {
    let text = '';
    info.setEncoding('utf8');
    info.on('data', (chunk: string) => (text += chunk));
    info.on('error', () => undefined);
    // bwrap closes its end after the report; it never writes one if it failed to start.
    info.on('close', () => resolve(text));
  });
  const init = sandboxInitPid(await report);
  const initStart = init === undefined ? undefined : await processStart(init);
  await exited;
  if (init === undefined || initStart === undefined) return;
  // The launcher is gone, so --die-with-parent ends the init: kill it at once
  // instead — if that pid is still the init, not a process started since.
  if ((await processStart(init)) !== initStart) return;
  try {
    process.kill(init, 'SIGKILL');
  } catch {
    /* already gone */
  }
  while ((await processStart(init)) === initStart) await new Promise((r) => setTimeout(r, 5));
}

function sandboxInitPid(report: string): number | undefined {
  try {
    const pid = (JSON.parse(report) as { 'child-pid'?: unknown })['child-pid'];
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A live process's start time (clock ticks since boot, /proc/<pid>/stat's
 * 22nd field): it tells that process from a later one given the same pid.
 * undefined once it is gone or a zombie (its namespace is already empty).
 */
async function processStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may hold spaces: the fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

let shared: Spawner | undefined;

/** The spawner of this process, started on first use. */
export function sharedSpawner(): Spawner {
  shared ??= startSpawner();
  return shared;
}
