import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { helmTemplate } from '../helpers/k8s-binaries.js';
import { useRedis } from '../helpers/redis.js';
import { serveConfigFor } from '../helpers/stack.js';
import { restartSafePort } from '../../src/net/ports.js';
import { startSim } from '../../src/sim/index.js';
import { Store } from '../../src/store/index.js';
import { distIsCurrent } from '../../bin/dist-is-current.js';

/**
 * Docker is not available where the tests run, so the image is checked in
 * two halves: the Dockerfile's instructions (what is copied, by whom, as which
 * user), and the final stage's layout staged in a directory outside the
 * project (so Node cannot find the project's node_modules) with only the
 * production dependencies and a fresh dist/, then run.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

interface Instruction {
  stage: string;
  op: string;
  args: string;
}

function instructions(): Instruction[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const out: Instruction[] = [];
  let stage = '';
  let n = 0;
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, op, args] = m as unknown as [string, string, string];
    if (op === 'FROM') stage = / AS (\S+)/i.exec(args)?.[1] ?? `stage-${n}`;
    if (op === 'FROM') n += 1;
    out.push({ stage, op, args: args.trim() });
  }
  return out;
}

describe('Dockerfile', () => {
  const all = instructions();
  const finalStage = all.at(-1)!.stage;
  const final = all.filter((i) => i.stage === finalStage);

  it('copies from the build context only files that exist and .dockerignore keeps', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const sources = all
      .filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources).toEqual(expect.arrayContaining(['labs', 'vm-templates', 'cloud-init', 'bin']));
    for (const s of sources) {
      expect(existsSync(join(ROOT, s)), `${s} exists`).toBe(true);
      expect(ignored, `${s} is not in .dockerignore`).not.toContain(s);
    }
  });

  it('runs as a non-root user, with dist/ and production dependencies only', () => {
    const user = final.filter((i) => i.op === 'USER').at(-1)?.args ?? '';
    expect(user).toMatch(/^[1-9][0-9]*:[1-9][0-9]*$/);
    const copies = final.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toContain('--from=build /src/dist ./dist');
    expect(copies).not.toContainEqual(expect.stringMatching(/^src\b|\/src\/src/));
    const depsStage = /--from=(\S+) \/app\/node_modules/.exec(copies.join('\n'))?.[1];
    const install = all.filter((i) => i.stage === depsStage && i.op === 'RUN').map((i) => i.args);
    expect(install.join(' ')).toMatch(/npm ci --omit=dev --ignore-scripts/);
    // Nothing installs dependencies in the final stage itself.
    expect(final.filter((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args))).toEqual([]);
  });

  it('builds dist/ with `npm run build`, client-node bundled, from what it copied', () => {
    const build = all.filter((i) => i.stage === 'build');
    const runBuild = build.findIndex((i) => i.op === 'RUN' && i.args === 'npm run build');
    expect(runBuild).toBeGreaterThan(0);
    const copied = build
      .slice(0, runBuild)
      .filter((i) => i.op === 'COPY')
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(copied).toEqual(
      expect.arrayContaining([
        'package.json',
        'tsconfig.build.json',
        'src',
        'scripts/bundle-client-node.mjs',
      ]),
    );
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.build).toMatch(
      /^tsc -p tsconfig\.build\.json && .*node scripts\/bundle-client-node\.mjs$/,
    );
  });

  it("compiles ssh2's native crypto binding in the dependencies' stage, and fails without it", () => {
    const copies = final.filter((i) => i.op === 'COPY').map((i) => i.args);
    const depsStage = /--from=(\S+) \/app\/node_modules/.exec(copies.join('\n'))?.[1];
    const runs = all.filter((i) => i.stage === depsStage && i.op === 'RUN').map((i) => i.args);
    const script = runs.join(' && ');
    // The compiler is there before the rebuild, and Node's headers are the image's own (nothing fetched).
    expect(script).toMatch(/apt-get install [^&]*\bpython3\b[^&]*\bmake\b[^&]*\bg\+\+/);
    const rebuild = /(\S+=\S+ )*npm rebuild ssh2\b/.exec(script)?.[0] ?? '';
    expect(rebuild).toContain('npm_config_nodedir=/usr/local');
    // A failed compile fails the build rather than shipping ssh2's WebAssembly fallback.
    expect(rebuild).toContain('CI_CHECK_FAIL=ssh2');
    expect(script.indexOf('npm rebuild ssh2')).toBeGreaterThan(script.indexOf('npm ci --omit=dev'));
    expect(script).toMatch(
      /require\('ssh2\/lib\/protocol\/crypto\.js'\)\.bindingAvailable\).*process\.exit\(1\)/,
    );
    // The final stage gets the compiled binding with the rest of node_modules, and no compiler.
    expect(copies).toContain(`--from=${depsStage} /app/node_modules ./node_modules`);
    expect(final.filter((i) => i.op === 'RUN' && /apt-get|g\+\+/.test(i.args))).toEqual([]);
  });

  it("is the image the Helm chart runs, with the chart's arguments", async () => {
    const entry = final.find((i) => i.op === 'ENTRYPOINT')?.args;
    expect(JSON.parse(entry!)).toEqual(['node', '/app/bin/labvirt.js']);
    const objs = parseAllDocuments(await helmTemplate(join(ROOT, 'deploy', 'helm', 'labvirt')))
      .map((d) => d.toJS() as { kind: string; spec?: Record<string, unknown> } | null)
      .filter((o) => o !== null);
    const deployment = objs.find((o) => o.kind === 'Deployment')!;
    const container = (
      deployment.spec as {
        template: {
          spec: {
            containers: { image: string; args: string[] }[];
            securityContext: { runAsUser: number };
          };
        };
      }
    ).template.spec;
    // The image's default command, narrowed by the chart to the orchestrator's
    // roles (the gateway runs as its own Deployment).
    const cmd = JSON.parse(final.find((i) => i.op === 'CMD')!.args) as string[];
    expect(container.containers[0]!.args).toEqual([
      ...cmd,
      '--roles',
      'api,workers,scheduler,sync',
    ]);
    expect(String(container.securityContext.runAsUser)).toBe(
      final.find((i) => i.op === 'USER')!.args.split(':')[0],
    );
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(container.containers[0]!.image).toBe(`ghcr.io/labvirt/labvirt:${pkg.version}`);
  }, 60_000);
});

/**
 * dist/ is newer than every source and compiler setting: `npm run build` made
 * it from what is checked out (bin/labvirt.js trusts dist/ on the same test).
 */
const distIsFresh = () =>
  distIsCurrent(ROOT, ['tsconfig.json', 'tsconfig.build.json', 'scripts/bundle-client-node.mjs']);

describe('the final stage, staged without Docker', () => {
  const redis = useRedis();
  let app: string;
  beforeAll(async () => {
    app = join(mkdtempSync(join(tmpdir(), 'labvirt-image-')), 'app');
    mkdirSync(app);
    // The production dependency tree, as `npm ci --omit=dev` would lay it out
    // (hard links: the same bytes, no download).
    const { stdout } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
      cwd: ROOT,
      maxBuffer: 16 * 2 ** 20,
    });
    const topLevel = stdout
      .split('\n')
      .slice(1)
      .filter((p) => p && !relative(join(ROOT, 'node_modules'), p).includes('node_modules'));
    for (const p of topLevel) {
      const target = join(app, 'node_modules', relative(join(ROOT, 'node_modules'), p));
      mkdirSync(dirname(target), { recursive: true });
      execFileSync('cp', ['-al', p, target]);
    }
    // The build stage's output: the project's dist/ when `npm run build` made
    // it from these very sources (as `npm ci` does in CI), else compiled here.
    // Compiling took 22 s of CPU (40 s at load 10) on the shared 2-core machine.
    if (distIsFresh()) cpSync(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
    else {
      await run(join(ROOT, 'node_modules', '.bin', 'tsc'), [
        '-p',
        join(ROOT, 'tsconfig.build.json'),
        '--outDir',
        join(app, 'dist'),
      ]);
      await run(process.execPath, [
        join(ROOT, 'scripts', 'bundle-client-node.mjs'),
        join(app, 'dist'),
      ]);
      cpSync(join(ROOT, 'src', 'store', 'scripts'), join(app, 'dist', 'store', 'scripts'), {
        recursive: true,
      });
    }
    for (const f of ['package.json', 'bin', 'labs', 'vm-templates', 'cloud-init']) {
      cpSync(join(ROOT, f), join(app, f), { recursive: true });
    }
  }, 300_000);
  afterAll(() => rmSync(dirname(app), { recursive: true, force: true }));

  const labvirt = (args: string[], env: Record<string, string> = {}) =>
    run('node', [join(app, 'bin', 'labvirt.js'), ...args], {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', HOME: app, ...env },
    });

  it('has no dev dependency and runs the CLI from dist/', async () => {
    expect(existsSync(join(app, 'node_modules', 'vitest'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'typescript'))).toBe(false);
    expect(existsSync(join(app, 'dist', 'cli', 'main.js'))).toBe(true);
    const { stdout } = await labvirt(['--help']);
    expect(stdout).toContain('Usage: labvirt');
    expect(stdout).toMatch(/serve \[options\]/);
  }, 180_000);

  it('loads the bundled Kubernetes client with production dependencies only', async () => {
    const bundle = join(app, 'dist', 'kube', 'client-node.js');
    expect(readFileSync(bundle, 'utf8')).toMatch(/^\/\/ @kubernetes\/client-node \S+, bundled/);
    // Its package imports resolve from the image's node_modules, not the project's.
    const { stdout } = await run(
      'node',
      [
        '--input-type=module',
        '-e',
        `const k = await import(${JSON.stringify(bundle)}); console.log(typeof k.KubeConfig, typeof k.Watch)`,
      ],
      { cwd: app, env: { PATH: process.env.PATH ?? '' } },
    );
    expect(stdout.trim()).toBe('function function');
  }, 60_000);

  it("runs labvirt's Redis scripts from dist/ alone (the image has no src/)", async () => {
    // A warm env claimed, as `serve` does at a student's start: every state
    // change is a Lua script, read from the image's own files.
    const script = `
      import { Redis } from 'ioredis';
      import { Store } from './dist/store/index.js';
      const redis = new Redis(process.env.REDIS_URL);
      const store = new Store(redis, 'image');
      await store.createEnv({ envId: 'env1', flavor: 'f', createdAt: 1 });
      await store.setEnvState('env1', 'booting', { expected: 'provisioning' });
      const warm = await store.markEnvWarm('env1', { expected: 'booting', now: 2 });
      const claim = await store.requestSession({
        sessionId: 's-image00001', student: 'a', labId: 'l', flavor: 'f', requestId: 'r1',
        publicKey: 'ssh-ed25519 AAAA', maxPerStudent: 1, now: 3,
      });
      console.log(JSON.stringify({ warm: warm.ok, outcome: claim.outcome }));
      redis.disconnect();`;
    expect(existsSync(join(app, 'src'))).toBe(false);
    const { stdout } = await run('node', ['--input-type=module', '-e', script], {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', REDIS_URL: redis.url },
    });
    expect(JSON.parse(stdout)).toEqual({ warm: true, outcome: 'claimed' });
  }, 60_000);

  it('serves from dist/ alone: fills its warm pool from a cluster and answers /healthz', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-image-serve-'));
    const sim = await startSim({ dir: join(dir, 'sim'), speed: 100 });
    let output = '';
    let child: ChildProcess | undefined;
    try {
      const port = await restartSafePort();
      const config = join(dir, 'labvirt.yaml');
      writeFileSync(
        config,
        stringify(
          serveConfigFor(sim, redis.url, {
            logLevel: 'info',
            flavors: {
              'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 1 },
              // The fixture labs name it; none is made.
              'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
            },
            pool: { pollSeconds: 0.05, replenishCron: '*/1 * * * * *' },
            api: { port },
            ssh: {
              gatewayPort: 0,
              bindAddress: '127.0.0.1',
              hostKey: join(dir, 'hk'),
              orchestratorKey: join(dir, 'ok'),
            },
          }),
        ),
      );
      child = spawn('node', [join(app, 'bin', 'labvirt.js'), 'serve', '--config', config], {
        cwd: app,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: app,
          LABVIRT_API_TOKEN: 'image-test-token-0123',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      const store = new Store(redis.connect(), 'labvirt');
      const deadline = Date.now() + 90_000;
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(
            `labvirt serve exited (${child.exitCode ?? child.signalCode}):\n${output}`,
          );
        }
        const warm = await store.listEnvs({ state: 'warm' });
        const health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
        if (warm.length === 1 && health?.status === 200) break;
        if (Date.now() > deadline)
          throw new Error(`no warm env in 90 s; labvirt printed:\n${output}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child!.once('exit', r));
      }
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);

  it("accepts the chart's configuration and the baked-in labs", async () => {
    const objs = parseAllDocuments(await helmTemplate(join(ROOT, 'deploy', 'helm', 'labvirt')))
      .map((d) => d.toJS() as { kind: string; data?: Record<string, string> } | null)
      .filter((o) => o !== null);
    const file = join(app, 'labvirt.yaml');
    writeFileSync(file, objs.find((o) => o.kind === 'ConfigMap')!.data!['labvirt.yaml']!);
    const check = await labvirt(['--config', file, 'config', 'check']);
    expect(check.stdout).toMatch(/configuration is valid/);
    const labs = await labvirt(['labs', 'validate'], { LABVIRT_CONFIG: file });
    // Relative to WORKDIR /app, as in the pod.
    expect(labs.stdout).toMatch(/^\d+ labs valid in labs /m);
  }, 180_000);
});
