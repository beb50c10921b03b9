/**
 * What a watched env adds to V8's heap, by kind: compares two heap snapshots
 * (`BENCH_HEAP_SNAPSHOT=<file> node --expose-gc --import tsx
 * bench/sync.bench.ts --watches N` writes `<file>.start.heapsnapshot` and
 * `<file>.watches.heapsnapshot`) and prints, per constructor (or kind of
 * V8 object), the bytes and objects added divided by N, largest first.
 *
 * Run: `node --import tsx bench/sync-heap-diff.ts <before> <after> <N>`.
 */
import { readFileSync } from 'node:fs';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per constructor name (objects, closures) or V8 kind (strings, code, arrays). */
function byKind(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = snap.snapshot.meta.node_fields;
  const kinds = snap.snapshot.meta.node_types[0];
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const totals = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const kind = kinds[snap.nodes[i + typeAt]!]!;
    const name = snap.strings[snap.nodes[i + nameAt]!]!;
    const key =
      kind === 'object'
        ? name
        : kind === 'closure'
          ? `closure ${name}`
          : kind === 'native'
            ? `(native) ${name}`
            : `(${kind})`;
    const t = totals.get(key) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += snap.nodes[i + sizeAt]!;
    totals.set(key, t);
  }
  return totals;
}

const [beforeFile, afterFile, n] = process.argv.slice(2);
if (!beforeFile || !afterFile || !n)
  throw new Error('usage: sync-heap-diff.ts <before> <after> <N>');
const envs = Number(n);
const before = byKind(beforeFile);
const after = byKind(afterFile);
const rows = [...after].map(([key, a]) => {
  const b = before.get(key) ?? { count: 0, bytes: 0 };
  return { key, bytes: (a.bytes - b.bytes) / envs, count: (a.count - b.count) / envs };
});
rows.sort((x, y) => y.bytes - x.bytes);
const total = rows.reduce((sum, r) => sum + r.bytes, 0);
console.log(`heap added per env: ${(total / 1024).toFixed(1)} KiB (self sizes, ${envs} envs)`);
for (const r of rows.filter((r) => Math.abs(r.bytes) >= 64).slice(0, 40))
  console.log(
    `${(r.bytes / 1024).toFixed(2).padStart(7)} KiB ${r.count.toFixed(1).padStart(6)} objects  ${r.key.slice(0, 80)}`,
  );
