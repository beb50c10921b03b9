import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as clientNode from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'bundle-client-node.mjs');
/** tsc's output for src/kube/client-node.ts, the module the build replaces. */
const REEXPORT = "export * from '@kubernetes/client-node';\n";

/**
 * `npm run build` replaces dist/kube/client-node.js with @kubernetes/client-node
 * bundled and minified (issue #12: ≈ 35 MiB less RSS per process). Built here
 * into a directory under node_modules/.cache, so the bundle's package imports
 * resolve from the project's node_modules as they do from dist/.
 */
describe('the bundled @kubernetes/client-node', () => {
  let dist: string;
  let bundled: typeof clientNode;
  let sim: SimHandle;
  let simDir: string;

  beforeAll(async () => {
    const cache = join(ROOT, 'node_modules', '.cache');
    mkdirSync(cache, { recursive: true });
    dist = mkdtempSync(join(cache, 'labvirt-bundle-test-'));
    mkdirSync(join(dist, 'kube'));
    writeFileSync(join(dist, 'kube', 'client-node.js'), REEXPORT);
    await run(process.execPath, [SCRIPT, dist], { cwd: ROOT });
    bundled = (await import(
      pathToFileURL(join(dist, 'kube', 'client-node.js')).href
    )) as typeof clientNode;
    simDir = mkdtempSync(join(cache, 'labvirt-bundle-sim-'));
    sim = await startSim({ dir: simDir });
  }, 120_000);
  afterAll(async () => {
    await sim?.stop();
    rmSync(dist, { recursive: true, force: true });
    rmSync(simDir, { recursive: true, force: true });
  });

  it('is one module, a fraction of the package, exporting every name the package does', () => {
    const size = statSync(join(dist, 'kube', 'client-node.js')).size;
    expect(size).toBeGreaterThan(1_000_000);
    expect(size).toBeLessThan(6_000_000);
    expect(Object.keys(bundled).sort()).toEqual(Object.keys(clientNode).sort());
    // Models keep what labvirt's strict schemas read from them (schema-k8s.ts).
    const attrs = (
      bundled as unknown as Record<string, { getAttributeTypeMap(): { baseName: string }[] }>
    ).V1Service!.getAttributeTypeMap();
    expect(attrs.map((a) => a.baseName)).toEqual([
      'apiVersion',
      'kind',
      'metadata',
      'spec',
      'status',
    ]);
    // Names as written (keepNames): stack traces read as client-node's.
    expect(bundled.KubeConfig.name).toBe('KubeConfig');
  });

  it('talks to an API server over HTTPS with a real kubeconfig', async () => {
    const kc = new bundled.KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    const core = kc.makeApiClient(bundled.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'bundle-check' } } });
    const list = await core.listNamespace();
    expect(list.items.map((n) => n.metadata?.name)).toContain('bundle-check');
    // Errors are client-node's own class, with the server's status.
    const missing = await core
      .readNamespace({ name: 'no-such-namespace' })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(bundled.ApiException);
    expect((missing as InstanceType<typeof bundled.ApiException<unknown>>).code).toBe(404);
  });

  it("bundles esbuild's transpile of the re-export too (the CLI bench's quick build)", async () => {
    const quick = mkdtempSync(join(ROOT, 'node_modules', '.cache', 'labvirt-bundle-quick-'));
    try {
      mkdirSync(join(quick, 'kube'));
      writeFileSync(
        join(quick, 'kube', 'client-node.js'),
        'export * from "@kubernetes/client-node";\n//# sourceMappingURL=client-node.js.map\n',
      );
      await run(process.execPath, [SCRIPT, quick], { cwd: ROOT });
      expect(readFileSync(join(quick, 'kube', 'client-node.js'), 'utf8')).toMatch(
        /^\/\/ @kubernetes\/client-node \S+, bundled/,
      );
    } finally {
      rmSync(quick, { recursive: true, force: true });
    }
  });

  it('refuses to bundle over anything but tsc’s re-export, naming the fix', async () => {
    // Run twice, it finds its own bundle.
    const again = await run(process.execPath, [SCRIPT, dist], { cwd: ROOT }).catch(
      (e: { stderr: string; code: number }) => e,
    );
    expect(again).toMatchObject({ code: 1 });
    expect((again as { stderr: string }).stderr).toMatch(/already the bundle: run tsc first/);
    const other = mkdtempSync(join(ROOT, 'node_modules', '.cache', 'labvirt-bundle-other-'));
    try {
      mkdirSync(join(other, 'kube'));
      writeFileSync(join(other, 'kube', 'client-node.js'), 'export const x = 1;\n');
      const refused = await run(process.execPath, [SCRIPT, other], { cwd: ROOT }).catch(
        (e: { stderr: string; code: number }) => e,
      );
      expect(refused).toMatchObject({ code: 1 });
      expect((refused as { stderr: string }).stderr).toMatch(/is not tsc's re-export/);
      expect(readFileSync(join(other, 'kube', 'client-node.js'), 'utf8')).toBe(
        'export const x = 1;\n',
      );
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
