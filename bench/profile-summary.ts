/**
 * Summarises a `.cpuprofile` (V8's format, as `node --cpu-prof` or the
 * inspector writes it): self time per function and per package, so a
 * profile can be read in a terminal. Run: `npx tsx bench/profile-summary.ts
 * <file> [top] [--window <from> <to> <ended>]`: with a window (epoch ms, as
 * the burst bench prints them: its start, its end, and when the profiled
 * process stopped), only the samples taken between `from` and `to` count.
 * Besides self time it shows the inclusive time of labvirt's own functions
 * (src/), each counted once per sample: where a claim's work starts.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** `@slack/bolt`, `ioredis`, `node:internal`, or `labvirt src/…` for our own code. */
function packageOf(url: string): string {
  if (!url) return '(native/gc/idle)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  // Our own code, from the sources (tsx) or the build (dist/).
  const src = Math.max(url.indexOf('/src/'), url.indexOf('/dist/'));
  if (src >= 0)
    return `labvirt ${url
      .slice(src + 1)
      .split('/')
      .slice(0, 2)
      .join('/')}`;
  const other = url.match(/\/(bench|test)\/.*/);
  return other ? `labvirt ${other[1]}` : url;
}

const args = process.argv.slice(2);
// `--split a,b`: the time of samples whose stack passes through a file whose
// path contains `a` (then `b`, …): e.g. ssh2's lib/server.js and lib/client.js
// split the gateway's work between its two SSH connections.
const splitAt = args.indexOf('--split');
const splits = splitAt >= 0 ? (args.splice(splitAt, 2)[1] ?? '').split(',').filter(Boolean) : [];
const windowAt = args.indexOf('--window');
const window = windowAt >= 0 ? args.splice(windowAt, 4).slice(1).map(Number) : ([] as number[]);
const [file, topArg] = args;
if (!file || (windowAt >= 0 && (window.length !== 3 || window.some((n) => !Number.isFinite(n))))) {
  console.error(
    'usage: profile-summary <file.cpuprofile> [top] [--window <from> <to> <ended>] [--split <path part>,…]',
  );
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
// A sample's epoch time, from the profile's end (≈ when the process stopped).
const [from = -Infinity, to = Infinity, ended = 0] = window;
const sampleEpochMs = (profileUs: number) => ended - (profile.endTime - profileUs) / 1000;
const selfUs = new Map<number, number>();
const inclusiveUs = new Map<string, number>();
const splitUs = new Map<string, number>();
let at = profile.startTime;
let total = 0;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  at += delta;
  if (window.length > 0) {
    const epoch = sampleEpochMs(at);
    if (epoch < from || epoch > to) return;
  }
  total += delta;
  selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  if (splits.length > 0) {
    const urls: string[] = [];
    for (let node: number | undefined = id; node !== undefined; node = parentOf.get(node))
      urls.push(byId.get(node)!.callFrame.url);
    const part = splits.find((p) => urls.some((u) => u.includes(p))) ?? '(none of them)';
    splitUs.set(part, (splitUs.get(part) ?? 0) + delta);
  }
  const seen = new Set<string>();
  for (let node: number | undefined = id; node !== undefined; node = parentOf.get(node)) {
    const { functionName, url, lineNumber } = byId.get(node)!.callFrame;
    const own = Math.max(url.indexOf('/src/'), url.indexOf('/dist/'));
    if (own < 0 || url.includes('node_modules')) continue;
    const name = `${functionName || '(anonymous)'} ${url.slice(own + 1)}:${lineNumber + 1}`;
    if (seen.has(name)) continue;
    seen.add(name);
    inclusiveUs.set(name, (inclusiveUs.get(name) ?? 0) + delta);
  }
});
const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
for (const [id, us] of selfUs) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const name = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  const pkg = packageOf(url);
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
}
const show = (title: string, m: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${name}`,
    );
  }
};
console.log(
  `profile: ${(total / 1000).toFixed(0)} ms${window.length > 0 ? ' in the window' : ''}, ${profile.samples.length} samples in all`,
);
show('self time by package', byPackage);
show('self time by function', byFunction);
show("inclusive time of labvirt's own functions (src/ or dist/)", inclusiveUs);
if (splits.length > 0)
  show(`time by the first of ${splits.join(', ')} on the stack (idle included)`, splitUs);
