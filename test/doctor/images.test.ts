import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig, type Config } from '../../src/config/index.js';
import { runDoctor, type CheckResult, type DoctorReport } from '../../src/doctor/index.js';
import {
  DOCTOR_IMAGE_PERMISSIONS,
  DOCTOR_PERMISSIONS,
  KIND_RESOURCES,
  permissionKey,
} from '../../src/kube/index.js';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'labvirt.js');
const MISSING = 'registry.example.org/labvirt/no-such-disk:1.30';
const GOOD = 'quay.io/containerdisks/ubuntu:22.04';

function byId(report: DoctorReport): Record<string, CheckResult> {
  return Object.fromEntries(report.results.map((r) => [r.id, r]));
}

/**
 * `labvirt doctor --check-images` against the simulator, whose kubelet pulls
 * every image but the ones it is told are missing.
 */
describe('labvirt doctor: can the host pull each flavor image', () => {
  let dir: string;
  let sim: SimHandle;
  let redis: RedisServerHandle;
  const configWith = (flavorImage: string): Config =>
    loadConfig({
      env: {},
      overrides: {
        kube: { kubeconfig: sim.kubeconfigPath },
        redis: { url: redis.url },
        vm: { image: GOOD },
        flavors: {
          'v1.30-1node': {
            kubernetesVersion: '1.30',
            nodes: 1,
            minWarm: 0,
            maxTotal: 1,
            image: flavorImage,
          },
          'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 0, maxTotal: 1 },
        },
      },
    });
  const probePods = () => sim.store.list('pods', 'default');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-doctor-images-'));
    [sim, redis] = await Promise.all([
      // speed 4: an image pull takes 0.5 s, long enough to interrupt one.
      startSim({ dir: join(dir, 'sim'), speed: 4, guests: false, missingImages: [MISSING] }),
      startRedisServer(),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([sim?.stop(), redis?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes when every image pulls, with only the calls the chart grants, and leaves no pod', async () => {
    const calls = new Set<string>();
    const report = await runDoctor({
      config: configWith('quay.io/containerdisks/ubuntu:22.04-golden'),
      images: { namespace: 'default', deadlineMs: 20_000 },
      onRequest: (v, k) => calls.add(`${v} ${k}`),
    });
    const r = byId(report);
    expect(r['image.v1.30-1node']).toMatchObject({
      status: 'pass',
      detail: expect.stringContaining('quay.io/containerdisks/ubuntu:22.04-golden pulled'),
    });
    expect(r['image.v1.31-1node']).toMatchObject({ status: 'pass' });
    expect(report.results.filter((x) => x.id.startsWith('image.'))).toHaveLength(2);
    const made = [...calls].map((c) => {
      const [verb, kind] = c.split(' ') as [string, string];
      return permissionKey({ ...KIND_RESOURCES[kind]!, verb: verb as never });
    });
    expect(made.sort()).toEqual(
      [...DOCTOR_PERMISSIONS, ...DOCTOR_IMAGE_PERMISSIONS].map(permissionKey).sort(),
    );
    expect(probePods()).toEqual([]);
  }, 60_000);

  it('probes the image by its locked digest when the image lock has it, as the VMs will pull it', async () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    const lockFile = join(dir, 'images.lock.yaml');
    writeFileSync(lockFile, `images:\n  ${GOOD}: ${digest}\n`);
    const config = configWith(GOOD);
    const report = await runDoctor({
      config: { ...config, vm: { ...config.vm, imagesLock: lockFile } },
      images: { namespace: 'default', deadlineMs: 20_000 },
    });
    expect(byId(report)['image.v1.30-1node']).toMatchObject({
      status: 'pass',
      detail: expect.stringContaining(`${GOOD}@${digest} pulled`),
    });
    expect(probePods()).toEqual([]);
  }, 60_000);

  it("fails for an image the registry does not have, with the kubelet's reason, and leaves no pod", async () => {
    const report = await runDoctor({
      config: configWith(MISSING),
      images: { namespace: 'default', deadlineMs: 20_000 },
    });
    const r = byId(report)['image.v1.30-1node']!;
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(
      /^registry\.example\.org\/labvirt\/no-such-disk:1\.30: (ErrImagePull|ImagePullBackOff): /,
    );
    expect(r.detail).toContain('not found');
    expect(r.fix).toMatch(/flavors\.<name>\.image/);
    expect(byId(report)['image.v1.31-1node']!.status).toBe('pass');
    expect(report.worst).toBe('fail');
    expect(probePods()).toEqual([]);
  }, 60_000);

  it('removes its probe pods when interrupted (Ctrl-C)', async () => {
    const interrupted = new AbortController();
    const doctor = runDoctor({
      config: configWith(MISSING),
      images: { namespace: 'default', deadlineMs: 20_000 },
      signal: interrupted.signal,
    });
    const deadline = Date.now() + 20_000;
    while (probePods().length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(probePods()).toHaveLength(2);
    interrupted.abort();
    const report = await doctor;
    const images = report.results.filter((x) => x.id.startsWith('image.'));
    expect(images.map((x) => x.status)).toEqual(['warn', 'warn']);
    expect(images[0]!.detail).toContain('interrupted');
    expect(probePods()).toEqual([]);
  }, 60_000);

  it('the CLI: --check-images in --json, exit code 4 for an unpullable image', async () => {
    const file = join(dir, 'labvirt.yaml');
    const config = configWith(MISSING);
    writeFileSync(
      file,
      stringify({ kube: config.kube, redis: config.redis, vm: config.vm, flavors: config.flavors }),
    );
    const out = await run('node', [BIN, '--config', file, 'doctor', '--json', '--check-images'], {
      env: { PATH: process.env.PATH ?? '' },
    }).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => err,
    );
    expect(out.code).toBe(4);
    const report = JSON.parse(out.stdout) as DoctorReport;
    expect(byId(report)['image.v1.30-1node']).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining(MISSING),
    });
    expect(byId(report)['image.v1.31-1node']!.status).toBe('pass');
    expect(probePods()).toEqual([]);
  }, 180_000);
});
