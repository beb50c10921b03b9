import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import {
  ImageLockError,
  ImageResolveError,
  RegistryClient,
  lockImages,
  imagesInUse,
  parseImageLock,
  parseImageReference,
  pinImage,
} from '../../src/images/index.js';
import { inventoryDirs } from '../../src/kube/index.js';
import { startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry.js';
import { configWith, named, renderWith, userDataOf } from '../kube/helpers.js';
import { restartSafePort } from '../../src/net/ports.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'labvirt.js');
const LIB = join(ROOT, 'cloud-init', 'lib.sh');

/**
 * A loopback port nothing listens on: outside the kernel's ephemeral range,
 * so no other test's listen on port 0 (or outgoing connection) takes it.
 */
const closedPort = () => restartSafePort();

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('node', [BIN, ...args], { env: { PATH: process.env.PATH ?? '' } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
}

describe('resolving a tag to its digest (OCI distribution API)', () => {
  let registry: FakeRegistry;
  let open: FakeRegistry;
  let downUrl: string;

  beforeAll(async () => {
    [registry, open] = await Promise.all([startFakeRegistry(), startFakeRegistry({ auth: false })]);
    downUrl = `http://127.0.0.1:${await closedPort()}`;
  });
  afterAll(async () => {
    await Promise.all([registry?.stop(), open?.stop()]);
  });

  it('answers the 401 challenge with an anonymous token from its realm, asking for the multi-platform index', async () => {
    const digest = registry.push('library/busybox', '1.36');
    const client = new RegistryClient({ endpoints: { 'docker.io': registry.url } });
    const resolved = await client.resolveDigest(parseImageReference('busybox:1.36'));
    expect(resolved).toEqual({ digest, from: registry.url });

    const token = registry.tokenRequests.at(-1)!;
    expect(token.get('service')).toBe('fake-registry');
    expect(token.get('scope')).toBe('repository:library/busybox:pull');
    const asked = registry.requests.filter((r) => r.path === '/v2/library/busybox/manifests/1.36');
    expect(asked[0]).toMatchObject({ method: 'HEAD', authorization: undefined });
    expect(asked.at(-1)!.authorization).toMatch(/^Bearer token-/);
    expect(asked[0]!.accept).toContain('application/vnd.oci.image.index.v1+json');
    expect(asked[0]!.accept).toContain('application/vnd.docker.distribution.manifest.list.v2+json');
  });

  it('hashes the manifest itself when the registry sends no Docker-Content-Digest', async () => {
    const digest = registry.push('calico/node', 'v3.29.3', { digestHeader: false });
    const client = new RegistryClient({ endpoints: { 'quay.io': registry.url } });
    const resolved = await client.resolveDigest(parseImageReference('quay.io/calico/node:v3.29.3'));
    expect(resolved.digest).toBe(digest);
  });

  it('says which image is missing when the tag does not exist', async () => {
    const client = new RegistryClient({ endpoints: { 'docker.io': registry.url } });
    const err = await client
      .resolveDigest(parseImageReference('busybox:9.99'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageResolveError);
    expect((err as ImageResolveError).kind).toBe('not-found');
    expect((err as Error).message).toContain(
      'image busybox:9.99 (docker.io/library/busybox:9.99) not found',
    );
    expect((err as Error).message).toContain(registry.url);
  });

  it('names the registry that is down', async () => {
    const client = new RegistryClient({ endpoints: { 'registry.k8s.io': downUrl } });
    const err = await client
      .resolveDigest(parseImageReference('registry.k8s.io/pause:3.9'))
      .catch((e: unknown) => e);
    expect((err as ImageResolveError).kind).toBe('unreachable');
    expect((err as Error).message).toMatch(
      new RegExp(
        `registry registry.k8s.io unreachable for registry.k8s.io/pause:3.9: ${downUrl}: ECONNREFUSED`,
      ),
    );
  });

  it('asks the mirrors first, in order, and the registry itself when they fail', async () => {
    const digest = open.push('library/nginx', '1.27-alpine');
    registry.push('library/nginx', '1.27-alpine');
    const viaMirror = await new RegistryClient({
      mirrors: { 'docker.io': [downUrl, `${open.url}/`] },
      endpoints: { 'docker.io': registry.url },
    }).resolveDigest(parseImageReference('nginx:1.27-alpine'));
    expect(viaMirror).toEqual({ digest, from: open.url });

    const direct = await new RegistryClient({
      mirrors: { 'docker.io': [downUrl] },
      endpoints: { 'docker.io': registry.url },
    }).resolveDigest(parseImageReference('nginx:1.27-alpine'));
    expect(direct.from).toBe(registry.url);
  });
});

// Each test runs several `labvirt` processes (a few seconds each alone); a
// loaded CI machine took over 120 s for the first once.
describe('labvirt images lock', { timeout: 300_000 }, () => {
  let dir: string;
  let registry: FakeRegistry;
  let configFile: string;
  let downUrl: string;
  const pushed = new Map<string, string>();
  const baseConfig = {
    vm: { registryMirrors: {} as Record<string, string[]> },
    flavors: {
      'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
    },
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-images-'));
    registry = await startFakeRegistry();
    downUrl = `http://127.0.0.1:${await closedPort()}`;
    // Everything the config's envs use, as the real registries would have it.
    for (const use of imagesInUse(configWith(baseConfig), inventoryDirs())) {
      const ref = parseImageReference(use.image);
      pushed.set(use.name, registry.push(ref.repository, ref.tag));
    }
    configFile = join(dir, 'labvirt.yaml');
    // A docker.io mirror that is down: the registry itself still answers.
    writeFileSync(
      configFile,
      stringify({ ...baseConfig, vm: { registryMirrors: { 'docker.io': [downUrl] } } }),
    );
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const overrides = () =>
    ['docker.io', 'quay.io', 'registry.k8s.io'].flatMap((r) => [
      '--registry',
      `${r}=${registry.url}`,
    ]);

  it('writes every image the envs and labs use with its digest, and rendering pins them', async () => {
    const lockFile = join(dir, 'images.lock.yaml');
    const out = await cli([
      '--config',
      configFile,
      'images',
      'lock',
      '--out',
      lockFile,
      ...overrides(),
    ]);
    expect(out.stderr).toContain(`wrote ${lockFile}`);
    expect(out.code).toBe(0);
    const lock = parseImageLock(readFileSync(lockFile, 'utf8'));
    expect(Object.fromEntries(lock.images)).toEqual(Object.fromEntries(pushed));
    for (const name of [
      'docker.io/library/busybox:1.36',
      'docker.io/library/nginx:1.27-alpine',
      'quay.io/calico/node:v3.29.3',
      'registry.k8s.io/kube-apiserver:v1.30.14',
      'registry.k8s.io/pause:3.9',
      'quay.io/containerdisks/ubuntu:22.04',
    ]) {
      expect(lock.images.get(name), name).toMatch(/^sha256:[0-9a-f]{64}$/);
    }

    // `images list` shows each image with its locked digest and who pulls it.
    const listFile = join(dir, 'list.yaml');
    writeFileSync(listFile, stringify({ ...baseConfig, vm: { imagesLock: lockFile } }));
    const listed = await cli(['--config', listFile, 'images', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(
      `docker.io/library/busybox:1.36\t${pushed.get('docker.io/library/busybox:1.36')}\tall-nodes\tlabs\n`,
    );
    expect(listed.stdout).toContain(
      `registry.k8s.io/etcd:3.5.15-0\t${pushed.get('registry.k8s.io/etcd:3.5.15-0')}\tcontrol-plane\tkubeadm v1.30.14\n`,
    );

    // `labvirt render` with a lock that holds every image warns of nothing;
    // with one that lacks an image (the labs' list grew) it names it.
    const rendered = await cli([
      '--config',
      listFile,
      'render',
      '--flavor',
      'v1.30-3node',
      '--no-validate',
    ]);
    expect(rendered.stderr).toBe('');
    expect(rendered.code).toBe(0);
    const partialLock = join(dir, 'partial.lock.yaml');
    writeFileSync(
      partialLock,
      readFileSync(lockFile, 'utf8')
        .split('\n')
        .filter((l) => !l.includes('busybox'))
        .join('\n'),
    );
    const partialConfig = join(dir, 'partial.yaml');
    writeFileSync(partialConfig, stringify({ ...baseConfig, vm: { imagesLock: partialLock } }));
    const stale = await cli([
      '--config',
      partialConfig,
      'render',
      '--flavor',
      'v1.30-3node',
      '--no-validate',
    ]);
    expect(stale.code).toBe(0);
    expect(stale.stderr).toBe(
      `labvirt: warning: 1 of the ${pushed.size} images the envs use are not in the image lock ${partialLock} (busybox:1.36) and are pulled by tag: run \`labvirt images lock\` again where the registries are reachable\n`,
    );

    const objects = await renderWith('v1.30-3node', {
      ...baseConfig,
      vm: { imagesLock: lockFile },
    });
    const disk = (name: string) =>
      named(objects, 'VirtualMachine', name).spec.template.spec.volumes.find(
        (v: { containerDisk?: unknown }) => v.containerDisk,
      ).containerDisk.image;
    expect(disk('worker-1')).toBe(
      `quay.io/containerdisks/ubuntu:22.04@${pushed.get('quay.io/containerdisks/ubuntu:22.04')}`,
    );
    const lockIn = (node: string) => {
      const doc = parse(userDataOf(objects, node).replace(/^#cloud-config\n/, '')) as {
        write_files: { path: string; content: string }[];
      };
      const file = doc.write_files.find((f) => f.path === '/etc/labvirt/images.lock');
      return Object.fromEntries(
        file!.content
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .map((l) => l.split(' ')),
      ) as Record<string, string>;
    };
    const cp = lockIn('control-plane');
    const worker = lockIn('worker-2');
    expect(cp['registry.k8s.io/etcd:3.5.15-0']).toBe(pushed.get('registry.k8s.io/etcd:3.5.15-0'));
    expect(cp['docker.io/library/busybox:1.36']).toBe(pushed.get('docker.io/library/busybox:1.36'));
    // Workers pre-pull what runs on every node, not the control plane's static pods.
    expect(Object.keys(worker).sort()).toEqual(
      Object.keys(cp)
        .filter((n) => !/kube-apiserver|kube-controller-manager|kube-scheduler|etcd/.test(n))
        .sort(),
    );
    expect(worker['registry.k8s.io/kube-proxy:v1.30.14']).toBeDefined();
    // containerDisks are the host's to pull, not the guest's.
    expect(cp['quay.io/containerdisks/ubuntu:22.04']).toBeUndefined();
  });

  const endpoints = (overrides: Record<string, string> = {}) => ({
    endpoints: {
      'docker.io': registry.url,
      'quay.io': registry.url,
      'registry.k8s.io': registry.url,
      ...overrides,
    },
  });

  it('leaves the lock unchanged and names the image when a tag is missing', async () => {
    const lockFile = join(dir, 'missing.lock.yaml');
    writeFileSync(lockFile, 'images: {}\n');
    const config = configWith({
      ...baseConfig,
      vm: { image: 'quay.io/containerdisks/ubuntu:99.99' },
    });
    const err = await lockImages(imagesInUse(config, inventoryDirs()), lockFile, endpoints()).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ImageLockError);
    expect((err as Error).message).toContain('could not resolve 1 image; the lock was not changed');
    expect((err as Error).message).toContain('image quay.io/containerdisks/ubuntu:99.99 not found');
    expect(readFileSync(lockFile, 'utf8')).toBe('images: {}\n');
  });

  it('leaves the lock unchanged and names the registry when it is down', async () => {
    const lockFile = join(dir, 'down.lock.yaml');
    writeFileSync(lockFile, 'images: {}\n');
    const uses = imagesInUse(configWith(baseConfig), inventoryDirs());
    const err = await lockImages(uses, lockFile, endpoints({ 'docker.io': downUrl })).catch(
      (e: unknown) => e,
    );
    expect((err as ImageLockError).failures.map((f) => f.image)).toEqual([
      'busybox:1.36',
      'nginx:1.27-alpine',
    ]);
    expect((err as Error).message).toContain('registry docker.io unreachable for busybox:1.36');
    expect((err as Error).message).toContain(`${downUrl}: ECONNREFUSED`);
    expect(readFileSync(lockFile, 'utf8')).toBe('images: {}\n');
  });

  it('refuses a lock entry that is not a digest, a bad image name, and a configured lock that is not there', async () => {
    expect(() => parseImageLock('images:\n  busybox:1.36: latest\n', 'x.yaml')).toThrow(
      'x.yaml: busybox:1.36: "latest" is not a sha256 digest',
    );
    expect(() => pinImage(parseImageLock('images: {}\n'), 'BusyBox:1.36')).toThrow(
      '"BusyBox:1.36" is not an image reference',
    );
    const lockFile = join(dir, 'typo.yaml');
    await expect(
      renderWith('v1.30-3node', { ...baseConfig, vm: { imagesLock: lockFile } }),
    ).rejects.toThrow(`vm.imagesLock: no image lock at ${lockFile}`);
  });
});

describe('the guest side of the lock (cloud-init/lib.sh)', () => {
  const DIGEST = `sha256:${'a'.repeat(64)}`;
  let root: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'labvirt-guest-lock-'));
    mkdirSync(join(root, 'etc', 'labvirt'), { recursive: true });
    writeFileSync(
      join(root, 'etc', 'labvirt', 'images.lock'),
      `# Written by labvirt\nquay.io/calico/node:v3.29.3 ${DIGEST}\ndocker.io/library/busybox:1.36 ${DIGEST}\n`,
    );
    // A ctr that records how it was called.
    mkdirSync(join(root, 'bin'));
    writeFileSync(join(root, 'bin', 'ctr'), `#!/bin/sh\necho "$*" >>"${root}/ctr.calls"\n`);
    chmodSync(join(root, 'bin', 'ctr'), 0o755);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const bash = (script: string) =>
    execFileSync(
      'bash',
      ['-c', `set -euo pipefail; . ${LIB}; LABVIRT_BOOTSTRAP_STARTED=${root}/started; ${script}`],
      {
        encoding: 'utf8',
        env: {
          PATH: `${root}/bin:${process.env.PATH ?? ''}`,
          LABVIRT_GUEST_ROOT: root,
          LABVIRT_DEADLINE_SECONDS: '60',
        },
      },
    );

  it('pins the images of a manifest that the lock has, and leaves the others', () => {
    const manifest = join(root, 'calico.yaml');
    writeFileSync(
      manifest,
      [
        '      containers:',
        '        - name: calico-node',
        '          image: quay.io/calico/node:v3.29.3',
        '        - image: quay.io/calico/cni:v3.29.3',
        '          imagePullPolicy: IfNotPresent',
        '',
      ].join('\n'),
    );
    expect(bash(`pin_manifest_images ${manifest}`)).toBe(
      [
        '      containers:',
        '        - name: calico-node',
        `          image: quay.io/calico/node:v3.29.3@${DIGEST}`,
        '        - image: quay.io/calico/cni:v3.29.3',
        '          imagePullPolicy: IfNotPresent',
        '',
      ].join('\n'),
    );
    expect(bash('locked_digest docker.io/library/busybox:1.36')).toBe(`${DIGEST}\n`);
    expect(bash('locked_digest docker.io/library/busybox:1.37')).toBe('');
  });

  it('pulls each locked image by digest through the mirrors and tags it under its name', () => {
    bash('pull_locked_images');
    expect(readFileSync(join(root, 'ctr.calls'), 'utf8').trim().split('\n')).toEqual([
      `-n k8s.io images pull --hosts-dir /etc/containerd/certs.d quay.io/calico/node@${DIGEST}`,
      `-n k8s.io images tag --force quay.io/calico/node@${DIGEST} quay.io/calico/node:v3.29.3`,
      `-n k8s.io images pull --hosts-dir /etc/containerd/certs.d docker.io/library/busybox@${DIGEST}`,
      `-n k8s.io images tag --force docker.io/library/busybox@${DIGEST} docker.io/library/busybox:1.36`,
    ]);
  });
});
