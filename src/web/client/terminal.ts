// The student's page: one xterm.js terminal per node over a WebSocket, and
// the lab's buttons. Loaded as /web/assets/terminal.js (bundled by esbuild).
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

const main = document.querySelector('main')!;
const sessionId = main.dataset.session!;
const nodes = (main.dataset.nodes ?? 'control-plane').split(',');
const output = document.getElementById('output')!;
const noticeBar = document.getElementById('notices')!;
const base = `/s/${sessionId}`;

async function call(action: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/${action}`, {
    method: 'POST',
    headers: { 'x-labvirt-web': '1' },
  });
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) {
    const error = body.error as { message?: string } | undefined;
    throw new Error(error?.message ?? `${action} failed (${res.status})`);
  }
  return body;
}

function show(lines: { text: string; cls?: string }[]) {
  output.replaceChildren(
    ...lines.map(({ text, cls }) => {
      const div = document.createElement('div');
      div.textContent = text;
      if (cls) div.className = cls;
      return div;
    }),
  );
}

// ---- time left, hints ------------------------------------------------
const timeLeft = document.getElementById('time-left')!;
const hints = document.getElementById('hints')!;
let expiresAt = Date.parse(timeLeft.dataset.expires ?? '');
let ended = false;
function renderTimeLeft() {
  if (ended) return;
  const left = Math.max(0, expiresAt - Date.now());
  const m = Math.floor(left / 60_000);
  const s = Math.floor((left % 60_000) / 1000);
  timeLeft.textContent = `Time left: ${m}:${String(s).padStart(2, '0')}`;
}
setInterval(renderTimeLeft, 1000);
renderTimeLeft();
async function refresh() {
  const res = await fetch(`${base}/state`);
  if (!res.ok) return;
  const s = (await res.json()) as {
    state: string;
    expiresAt?: string;
    hintsUsed: number;
    hintsTotal: number;
  };
  if (s.expiresAt) expiresAt = Date.parse(s.expiresAt);
  hints.textContent = `Hints used: ${s.hintsUsed}/${s.hintsTotal}`;
  if (s.state === 'ended') {
    ended = true;
    timeLeft.textContent = 'Session ended';
  }
}
setInterval(() => void refresh().catch(() => undefined), 15_000);

// ---- buttons -----------------------------------------------------------
function button(id: string, run: () => Promise<void>) {
  const el = document.getElementById(id) as HTMLButtonElement;
  el.addEventListener('click', () => {
    el.disabled = true;
    run()
      .catch((err: Error) => show([{ text: err.message, cls: 'fail' }]))
      .finally(() => (el.disabled = false));
  });
}
button('check', async () => {
  show([{ text: 'Checking…' }]);
  const r = (await call('check')) as {
    passed: boolean;
    score: number;
    maxScore: number;
    checks: {
      name: string;
      passed: boolean;
      points: number;
      description: string;
      messages: string[];
    }[];
  };
  const lines: { text: string; cls?: string }[] = [];
  for (const c of r.checks) {
    lines.push({
      text: `${c.passed ? '✓' : '✗'} ${c.name}: ${c.description}`,
      cls: c.passed ? 'pass' : 'fail',
    });
    for (const m of c.messages) lines.push({ text: `    FAIL: ${m}`, cls: 'fail' });
  }
  lines.push({
    text: r.passed
      ? `PASSED: score ${r.score}/${r.maxScore}`
      : `Score ${r.score}/${r.maxScore}: not passed yet`,
    cls: r.passed ? 'pass' : 'fail',
  });
  show(lines);
});
button('hint', async () => {
  const h = (await call('hint')) as { index: number; total: number; text: string };
  show([{ text: `Hint ${h.index}/${h.total}: ${h.text}` }]);
  await refresh();
});
button('extend', async () => {
  const s = (await call('extend')) as { expiresAt: string };
  expiresAt = Date.parse(s.expiresAt);
  show([{ text: `Extended: the session now ends at ${new Date(expiresAt).toLocaleTimeString()}` }]);
});
button('stop', async () => {
  if (!confirm('Stop this lab session? Your environment is deleted.')) return;
  await call('stop');
  location.reload();
});

// ---- terminals ---------------------------------------------------------
const tabs = document.getElementById('tabs')!;
const panes = document.getElementById('panes')!;
const terminals: { node: string; term: Terminal; fit: FitAddon; pane: HTMLElement }[] = [];

function select(node: string) {
  for (const t of terminals) {
    const active = t.node === node;
    t.pane.hidden = !active;
    tabs.querySelector(`[data-node="${t.node}"]`)!.setAttribute('aria-selected', String(active));
    if (active) {
      t.fit.fit();
      t.term.focus();
    }
  }
}

/** A notice from labvirt: in the tab's terminal, and above the terminals (a full-screen program may redraw over it). */
function showNotice(node: string, term: Terminal, text: string) {
  term.write(`\r\n\x1b[33m[labvirt] ${text}\x1b[0m\r\n`);
  const line = document.createElement('div');
  line.textContent = `${node}: ${text}`;
  noticeBar.append(line);
  while (noticeBar.childElementCount > 3) noticeBar.firstElementChild!.remove();
}

function openTerminal(node: string) {
  const tab = document.createElement('button');
  tab.type = 'button';
  tab.role = 'tab';
  tab.dataset.node = node;
  tab.textContent = node;
  tab.addEventListener('click', () => select(node));
  tabs.append(tab);
  const pane = document.createElement('div');
  pane.className = 'pane';
  pane.dataset.node = node;
  panes.append(pane);
  const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(pane);
  terminals.push({ node, term, fit, pane });
  // Copy with Ctrl+Shift+C; Ctrl+Shift+V is left to the browser's own paste.
  term.attachCustomKeyEventHandler((e) => {
    if (e.type === 'keydown' && e.ctrlKey && e.shiftKey && e.code === 'KeyC') {
      void navigator.clipboard?.writeText(term.getSelection());
      return false;
    }
    if (e.type === 'keydown' && e.ctrlKey && e.shiftKey && e.code === 'KeyV') return false;
    return true;
  });

  let socket: WebSocket | undefined;
  let attempts = 0;
  let finished = false;
  const encoder = new TextEncoder();
  term.onData((data) => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    else if (finished && !ended) {
      finished = false;
      connect(false);
    }
  });
  term.onResize(({ cols, rows }) => {
    if (socket?.readyState === WebSocket.OPEN)
      socket.send(JSON.stringify({ type: 'resize', cols, rows }));
  });

  const connect = (resume: boolean) => {
    const url = new URL(`${base}/terminal`, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = new URLSearchParams({
      node,
      cols: String(term.cols),
      rows: String(term.rows),
      resume: resume ? '1' : '0',
    }).toString();
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    socket = ws;
    let closedByServer = false;
    ws.onopen = () => (attempts = 0);
    ws.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) return term.write(new Uint8Array(e.data));
      const m = JSON.parse(e.data as string) as {
        type: string;
        text?: string;
        reason?: string;
        ended?: boolean;
      };
      if (m.type === 'notice') showNotice(node, term, m.text ?? '');
      if (m.type === 'closed') {
        closedByServer = true;
        finished = true;
        if (m.ended) {
          ended = true;
          timeLeft.textContent = 'Session ended';
          term.write(`\r\n\x1b[31m[labvirt] ${m.reason}. This terminal is closed.\x1b[0m\r\n`);
        } else {
          term.write(
            `\r\n\x1b[33m[labvirt] ${m.reason}. Press any key for a new shell.\x1b[0m\r\n`,
          );
        }
      }
    };
    ws.onclose = () => {
      if (closedByServer || ended) return;
      // A dropped connection: try again, a little later each time.
      attempts++;
      term.write(`\r\n\x1b[33m[labvirt] connection lost, reconnecting…\x1b[0m\r\n`);
      setTimeout(() => connect(true), Math.min(10_000, 500 * 2 ** Math.min(attempts, 5)));
    };
  };
  // Fit first so the shell starts at the pane's size.
  fit.fit();
  connect(false);
}

for (const node of nodes) openTerminal(node);
select(nodes[0]!);
window.addEventListener('resize', () => {
  for (const t of terminals) if (!t.pane.hidden) t.fit.fit();
});
