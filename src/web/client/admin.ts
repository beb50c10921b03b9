// The operator dashboard (/admin): pool per flavor, envs, waiting line, live
// events (server-sent events). Loaded as /web/assets/admin.js.

const post = (path: string, body?: unknown) =>
  fetch(path, {
    method: 'POST',
    headers: { 'x-labvirt-web': '1', ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

async function errorOf(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
  return body.error?.message ?? `request failed (${res.status})`;
}

function signIn(form: HTMLFormElement | null, body: () => unknown, wrong: string) {
  form?.addEventListener('submit', (e) => {
    e.preventDefault();
    void post('/admin/login', body()).then(async (res) => {
      if (res.ok) return location.assign('/admin');
      document.getElementById('login-error')!.textContent =
        res.status === 401 ? wrong : await errorOf(res);
    });
  });
}
const valueOf = (id: string) => (document.getElementById(id) as HTMLInputElement).value;
signIn(
  document.getElementById('login') as HTMLFormElement | null,
  () => ({ token: valueOf('token') }),
  'Wrong API token.',
);
signIn(
  document.getElementById('password-login') as HTMLFormElement | null,
  () => ({ username: valueOf('username'), password: valueOf('password') }),
  'Wrong username or password.',
);

interface Flavor {
  flavor: string;
  counts: Record<string, number>;
  targetWarm: number;
  targetOverride?: number;
  maxTotal: number;
  waiting: number;
  capacityBlocked: boolean;
  capacityReason?: string;
}
interface State {
  at: string;
  pool: { flavors: Flavor[] };
  envs: {
    id: string;
    flavor: string;
    state: string;
    createdAt: string;
    student?: string;
    labId?: string;
    sessionId?: string;
  }[];
  waiting: {
    id: string;
    student: string;
    labId: string;
    queue?: { position: number; estimateSeconds: number };
  }[];
  history: { at: number; flavors: Record<string, { warm: number; used: number }> }[];
  feed: { at: string; event: Record<string, unknown> & { type: string } }[];
}

function cell(text: string | number | Node): HTMLTableCellElement {
  const td = document.createElement('td');
  if (text instanceof Node) td.append(text);
  else td.textContent = String(text);
  return td;
}
function row(...cells: (string | number | Node)[]): HTMLTableRowElement {
  const tr = document.createElement('tr');
  tr.append(...cells.map(cell));
  return tr;
}
function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

const SVG = 'http://www.w3.org/2000/svg';
function chart(history: State['history'], flavor: string, max: number): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', '0 0 160 32');
  const t0 = Date.now() - 3600_000;
  for (const key of ['warm', 'used'] as const) {
    const points = history
      .filter((h) => h.flavors[flavor])
      .map(
        (h) =>
          `${Math.max(0, ((h.at - t0) / 3600_000) * 160).toFixed(1)},${(32 - (h.flavors[flavor]![key] / Math.max(1, max)) * 30).toFixed(1)}`,
      );
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', key);
    line.setAttribute('points', points.join(' '));
    svg.append(line);
  }
  return svg;
}

function describe(event: State['feed'][number]['event']): string {
  const { type, ...rest } = event;
  return `${type} ${Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ')}`;
}
const feed = document.getElementById('feed');
function addFeed(entry: State['feed'][number]) {
  const li = document.createElement('li');
  li.textContent = `${new Date(entry.at).toLocaleTimeString()} ${describe(entry.event)}`;
  if (entry.event.type === 'env.failed' || entry.event.type === 'pool.capacity')
    li.className = 'fail';
  feed!.prepend(li);
  while (feed!.children.length > 200) feed!.lastChild!.remove();
}

const poolActions = document.getElementById('dashboard')?.dataset.actions === 'pool';

/** Runs a confirmed action and says how it went; the tables refresh either way. */
function act(path: string, body: unknown, done: string) {
  const status = document.getElementById('action-status')!;
  void post(path, body).then(async (res) => {
    status.textContent = res.ok ? done : `Refused: ${await errorOf(res)}`;
    status.className = res.ok ? '' : 'fail';
    void load();
  });
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function flavorActions(f: Flavor): Node {
  const span = document.createElement('span');
  if (!poolActions) return span;
  const path = `/admin/flavors/${encodeURIComponent(f.flavor)}`;
  span.append(
    button('Resize', () => {
      const answer = prompt(
        `New warm target for ${f.flavor} (0 to ${f.maxTotal}):`,
        String(f.targetWarm),
      );
      if (answer === null) return;
      const target = Number(answer.trim());
      if (answer.trim() === '' || !Number.isInteger(target)) {
        document.getElementById('action-status')!.textContent =
          `Not a whole number: ${JSON.stringify(answer)}`;
        return;
      }
      if (!confirm(`Set the warm target of ${f.flavor} to ${target}?`)) return;
      act(`${path}/target`, { targetWarm: target }, `Target of ${f.flavor} set to ${target}.`);
    }),
    button('Drain', () => {
      if (
        !confirm(
          `Drain ${f.flavor}? Its target becomes 0 and its warm environments are deleted; environments in use finish normally.`,
        )
      )
        return;
      act(`${path}/drain`, undefined, `${f.flavor} drained: its warm environments are going.`);
    }),
  );
  if (f.targetOverride !== undefined) {
    span.append(
      button('Reset target', () => {
        if (!confirm(`Drop the runtime target of ${f.flavor} and use the configured one again?`))
          return;
        act(
          `${path}/target`,
          { targetWarm: null },
          `Target of ${f.flavor} is the configured one again.`,
        );
      }),
    );
  }
  return span;
}

function render(state: State) {
  // The chart ends at the counts shown now, so a fresh page draws a line too.
  const current = {
    at: Date.now(),
    flavors: Object.fromEntries(
      state.pool.flavors.map((f) => [
        f.flavor,
        {
          warm: f.counts.warm ?? 0,
          used: (f.counts.claimed ?? 0) + (f.counts.preparing ?? 0) + (f.counts.active ?? 0),
        },
      ]),
    ),
  };
  const history = [...state.history, current];
  document.getElementById('updated')!.textContent =
    `updated ${new Date(state.at).toLocaleTimeString()}`;
  const flavors = document.querySelector('#flavors tbody')!;
  flavors.replaceChildren(
    ...state.pool.flavors.map((f) => {
      const c = f.counts;
      const tr = row(
        f.flavor,
        c.warm ?? 0,
        (c.provisioning ?? 0) + (c.booting ?? 0),
        (c.claimed ?? 0) + (c.preparing ?? 0) + (c.active ?? 0),
        c.failed ?? 0,
        f.targetOverride === undefined ? f.targetWarm : `${f.targetWarm} (set)`,
        f.maxTotal,
        f.waiting,
        f.capacityBlocked ? `blocked: ${f.capacityReason ?? ''}` : 'ok',
        chart(history, f.flavor, f.maxTotal),
        flavorActions(f),
      );
      tr.dataset.flavor = f.flavor;
      return tr;
    }),
  );
  document
    .querySelector('#waiting tbody')!
    .replaceChildren(
      ...state.waiting.map((w) =>
        row(
          w.queue?.position ?? '?',
          w.id,
          w.student,
          w.labId,
          w.queue ? `${w.queue.estimateSeconds} s` : '?',
        ),
      ),
    );
  document.querySelector('#envs tbody')!.replaceChildren(
    ...state.envs.map((e) => {
      let action: string | Node = '';
      if (e.sessionId && e.state === 'active') {
        action = button('End session', () => {
          if (!confirm(`End session ${e.sessionId} of ${e.student}? Their environment is deleted.`))
            return;
          act(`/admin/sessions/${e.sessionId}/stop`, undefined, `Session ${e.sessionId} ended.`);
        });
      } else if (e.state === 'failed' && poolActions) {
        action = button('Delete', () => {
          if (!confirm(`Delete the failed environment ${e.id}?`)) return;
          act(`/admin/envs/${e.id}/delete`, undefined, `Environment ${e.id} is being deleted.`);
        });
      }
      const tr = row(
        e.id,
        e.flavor,
        e.state,
        age(e.createdAt),
        e.student ?? '',
        e.labId ?? '',
        e.sessionId ?? '',
        action,
      );
      tr.dataset.env = e.id;
      return tr;
    }),
  );
}

let loading = false;
let again = false;
async function load() {
  if (loading) return void (again = true);
  loading = true;
  try {
    const res = await fetch('/admin/state');
    if (res.status === 401) return location.reload();
    if (res.ok) render((await res.json()) as State);
  } finally {
    loading = false;
    if (again) {
      again = false;
      void load();
    }
  }
}

if (document.getElementById('dashboard')) {
  void fetch('/admin/state')
    .then((r) => r.json() as Promise<State>)
    .then((state) => {
      render(state);
      for (const entry of state.feed) addFeed(entry);
    });
  const events = new EventSource('/admin/events');
  events.onmessage = (e) => {
    addFeed(JSON.parse(e.data as string) as State['feed'][number]);
    void load();
  };
  setInterval(() => void load(), 30_000);
  document.getElementById('logout')!.addEventListener('click', () => {
    void post('/admin/logout').then(() => location.reload());
  });
}
