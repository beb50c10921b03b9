/* eslint-disable @typescript-eslint/no-explicit-any -- parsed cloud-config is inspected field by field */
// The parts of the real-cluster path that can be checked without a cluster:
// hack/e2e-real.sh in --dry-run mode, the golden-image recipe, and that the
// recipe bakes exactly what the rendered user data checks for.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { configWith } from '../kube/helpers.js';
import { PROJECT_ROOT, renderWith, userDataOf } from './helpers.js';

const HACK = join(PROJECT_ROOT, 'hack');
const IMAGES = join(PROJECT_ROOT, 'vm-templates', 'images');
const SHELLCHECK = '/usr/bin/shellcheck';

function run(script: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync('bash', [script, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env },
  });
}

/** `NAME=(a b c)` of a bash script, as a list. */
function bashArray(text: string, name: string): string[] {
  const m = new RegExp(`^(?:readonly )?${name}=\\(([^)]*)\\)$`, 'm').exec(text);
  if (!m) throw new Error(`no array ${name}`);
  return m[1]!.trim().split(/\s+/);
}

function bashValue(text: string, name: string): string {
  const m = new RegExp(`^(?:readonly )?${name}=(\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no variable ${name}`);
  return m[1]!.replace(/^"(.*)"$/, '$1');
}

describe('hack/e2e-real.sh --dry-run', { timeout: 120_000 }, () => {
  it('prints every step against the current kubeconfig: conformance, one env per flavor, every lab’s real scripts, a report', () => {
    const r = run(join(HACK, 'e2e-real.sh'), ['--dry-run', '--out', '/tmp/e2e-dry'], {
      KUBECONFIG: '/tmp/e2e-dry/kubeconfig',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout;
    const steps = [...out.matchAll(/^step (\S+)$/gm)].map((m) => m[1]);
    expect(steps).toEqual([
      'cluster',
      'doctor',
      'conformance',
      'boot-v1.30-3node',
      'boot-v1.31-1node',
      'labs',
    ]);
    expect(out).toContain('LABVIRT_E2E_KUBECONFIG=/tmp/e2e-dry/kubeconfig npx vitest run');
    expect(out).toMatch(/render --flavor v1\.30-3node --env e2e1\d+/);
    expect(out).toMatch(/kubectl -n lab-e2e1\d+ wait vmi --all --for=condition=Ready/);
    // Booted means the student cluster is up: the control plane's marker, from the serial console.
    expect(out).toMatch(/retry_seconds 1800 control_plane_ready lab-e2e1\d+$/m);
    expect(out).toMatch(/kubectl delete namespace lab-e2e2\d+/);
    expect(out).toMatch(/labs test --real --timeout 1800$/m);
    expect(out).toContain('| labs | DRY-RUN | 0s |');
  });

  it('runs only the named labs and flavors, and refuses a bad flavor name', () => {
    const r = run(join(HACK, 'e2e-real.sh'), [
      '--dry-run',
      '--flavors',
      'v1.31-1node',
      'etcd-restore',
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain('boot-v1.30-3node');
    expect(r.stdout).toMatch(/labs test --real --timeout 1800 etcd-restore$/m);
    const bad = run(join(HACK, 'e2e-real.sh'), ['--dry-run', '--flavors', 'v1.31;reboot']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('not a flavor name');
  });

  it('knows the student cluster is up from the control plane’s own log line on the serial console', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-e2e-ready-'));
    try {
      // The line mark_ready logs, as control-plane.sh prints it in the guest.
      const lib = join(PROJECT_ROOT, 'cloud-init', 'lib.sh');
      const line = spawnSync(
        'bash',
        [
          '-c',
          `. ${lib}; log "ready: wrote $LABVIRT_READY_MARKER"`,
          '/usr/local/lib/labvirt/control-plane.sh',
        ],
        { encoding: 'utf8' },
      ).stderr;
      expect(line).toMatch(/labvirt\[control-plane\.sh\]: ready: wrote \/var\/lib\/labvirt\/ready/);
      // kubectl as the host would answer: the launcher pod, then its console log.
      const console = join(dir, 'console.log');
      writeFileSync(
        join(dir, 'kubectl'),
        `#!/bin/sh\ncase "$*" in\n  *"get pods"*) echo pod/virt-launcher-control-plane-abcde ;;\n  *"logs pod/virt-launcher-control-plane-abcde -c guest-console-log"*) cat ${console} ;;\n  *) exit 1 ;;\nesac\n`,
        { mode: 0o755 },
      );
      const script = readFileSync(join(HACK, 'e2e-real.sh'), 'utf8');
      const fn = /^control_plane_ready\(\) \{\n[\s\S]*?\n\}$/m.exec(script)![0];
      const ready = () =>
        spawnSync('bash', ['-c', `${fn}\ncontrol_plane_ready lab-x`], {
          env: { PATH: `${dir}:/usr/bin:/bin` },
        }).status;
      writeFileSync(
        console,
        '[  OK  ] Started cloud-final.service\nlabvirt[control-plane.sh]: 1 of 3 nodes Ready\n',
      );
      expect(ready()).toBe(1);
      writeFileSync(console, `cloud-init output\n${line}`);
      expect(ready()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names only conformance test files that exist', () => {
    const r = run(join(HACK, 'e2e-real.sh'), ['--dry-run']);
    const files = [...r.stdout.matchAll(/test\/sim\/[\w-]+\.test\.ts/g)].map((m) => m[0]);
    expect(files.length).toBeGreaterThanOrEqual(3);
    const present = readdirSync(join(PROJECT_ROOT, 'test', 'sim'));
    for (const f of files) expect(present).toContain(f.replace('test/sim/', ''));
  });
});

describe('golden images (vm-templates/images)', { timeout: 120_000 }, () => {
  const bake = readFileSync(join(IMAGES, 'bake.sh'), 'utf8');

  it('bake exactly the tools the rendered user data checks before it skips installing', async () => {
    const doc = parse(userDataOf(await renderWith('v1.31-1node'), 'control-plane'));
    const installer = doc.write_files.find(
      (f: any) => f.path === '/usr/local/lib/labvirt/install-kubernetes.sh',
    ).content as string;
    expect(bashArray(bake, 'BAKED_TOOLS')).toEqual(bashArray(installer, 'GOLDEN_TOOLS'));
    // And the installer refuses a golden image that lacks one of them.
    expect(installer).toContain(
      'if [[ "$LABVIRT_GOLDEN_IMAGE" == true ]] && ! have "${GOLDEN_TOOLS[@]}"',
    );
  });

  it('cache Calico’s manifest where the control plane looks for it, at the same version', async () => {
    const doc = parse(userDataOf(await renderWith('v1.31-1node'), 'control-plane'));
    const cp = doc.write_files.find(
      (f: any) => f.path === '/usr/local/lib/labvirt/control-plane.sh',
    ).content as string;
    expect(bashValue(bake, 'CALICO_VERSION')).toBe(bashValue(cp, 'CALICO_VERSION'));
    expect(bashValue(bake, 'CALICO_CACHED')).toBe(bashValue(cp, 'CALICO_CACHED'));
  });

  it('pre-pull every image the labs’ real scripts run', () => {
    const listed = readFileSync(join(IMAGES, 'lab-images.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'));
    const labsDir = join(PROJECT_ROOT, 'labs');
    const used = new Set<string>();
    for (const lab of readdirSync(labsDir)) {
      for (const file of readdirSync(join(labsDir, lab)).filter((f) => f.endsWith('.sh'))) {
        const text = readFileSync(join(labsDir, lab, file), 'utf8');
        for (const m of text.matchAll(/image: *([a-z0-9][\w./:@-]*)/g)) used.add(m[1]!);
        for (const m of text.matchAll(/set image \S+ \w+=([\w./:@-]+)/g)) used.add(m[1]!);
      }
    }
    expect(used.size).toBeGreaterThan(0);
    for (const image of used) expect(listed, image).toContain(image);
  });

  it('print their steps with --dry-run, and refuse a bad minor version', () => {
    const r = run(join(IMAGES, 'bake.sh'), ['--dry-run', '1.31', 'base.img', 'out.qcow2']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('+ qemu-img resize out.qcow2 12G');
    expect(r.stdout).toMatch(/\+ virt-customize -a out\.qcow2 --network/);
    expect(r.stdout).toContain('https://pkgs.k8s.io/core:/stable:/v1.31/deb/');
    expect(r.stdout).toContain('ctr -n k8s.io images pull');
    expect(r.stdout).toContain('busybox:1.36');
    const bad = run(join(IMAGES, 'bake.sh'), ['--dry-run', '1.31;x', 'a', 'b']);
    expect(bad.status).toBe(2);
  });

  it('bake with the image lock: pulls by digest tagged under the name, the kubeadm patch it was made for', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-bake-lock-'));
    try {
      const digest = `sha256:${'c'.repeat(64)}`;
      const lock = join(dir, 'images.lock.yaml');
      writeFileSync(lock, `# comment\nimages:\n  docker.io/library/busybox:1.36: ${digest}\n`);
      const r = run(join(IMAGES, 'bake.sh'), [
        '--dry-run',
        '--lock',
        lock,
        '1.30',
        'b.img',
        'o.qcow2',
      ]);
      expect(r.stderr).toBe('baked o.qcow2 for Kubernetes 1.30\n');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`docker.io/library/busybox:1.36 ${digest}\n`);
      expect(r.stdout).toContain('ctr -n k8s.io images tag --force "${ref%:*}@$digest" "$ref"');
      const patch = (parse(readFileSync(join(IMAGES, 'kubeadm-images.yaml'), 'utf8')) as any)[
        '1.30'
      ].kubernetes.slice(1);
      expect(r.stdout).toContain(`kubeadm=${patch}-\\* kubelet=${patch}-\\* kubectl=${patch}-\\*`);

      writeFileSync(lock, 'images:\n  busybox:1.36: sha256:short\n');
      const bad = run(join(IMAGES, 'bake.sh'), [
        '--dry-run',
        '--lock',
        lock,
        '1.30',
        'b.img',
        'o.qcow2',
      ]);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain(`${lock}: unexpected line:   busybox:1.36: sha256:short`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('list kubeadm’s images for every minor the default flavors and the labs use', () => {
    const releases = parse(readFileSync(join(IMAGES, 'kubeadm-images.yaml'), 'utf8')) as Record<
      string,
      { kubernetes: string; images: string[] }
    >;
    const minors = new Set(Object.values(configWith().flavors).map((f) => f.kubernetesVersion));
    const labsDir = join(PROJECT_ROOT, 'labs');
    for (const lab of readdirSync(labsDir)) {
      const m = /kubernetes: '(1\.\d+)'/.exec(readFileSync(join(labsDir, lab, 'lab.yaml'), 'utf8'));
      if (m) minors.add(m[1]!);
    }
    for (const minor of minors) {
      const release = releases[minor];
      expect(release, minor).toBeDefined();
      expect(release!.kubernetes.startsWith(`v${minor}.`)).toBe(true);
      expect(release!.images).toContain(`registry.k8s.io/kube-apiserver:${release!.kubernetes}`);
      expect(release!.images.some((i) => i.startsWith('registry.k8s.io/pause:'))).toBe(true);
    }
  });

  it('list for each minor exactly what kubeadm lists: its four components at the patch, one etcd, CoreDNS and pause', () => {
    const releases = parse(readFileSync(join(IMAGES, 'kubeadm-images.yaml'), 'utf8')) as Record<
      string,
      { kubernetes: string; images: string[] }
    >;
    expect(Object.keys(releases).length).toBeGreaterThan(0);
    for (const [minor, release] of Object.entries(releases)) {
      expect(release.kubernetes, minor).toMatch(
        new RegExp(`^v${minor.replace('.', '\\.')}\\.\\d+$`),
      );
      const components = [
        'kube-apiserver',
        'kube-controller-manager',
        'kube-scheduler',
        'kube-proxy',
      ];
      // The order `kubeadm config images list` prints, so a pasted list diffs cleanly.
      expect(release.images, minor).toEqual([
        ...components.map((c) => `registry.k8s.io/${c}:${release.kubernetes}`),
        expect.stringMatching(/^registry\.k8s\.io\/coredns\/coredns:v\d+\.\d+\.\d+$/),
        expect.stringMatching(/^registry\.k8s\.io\/pause:\d+\.\d+(\.\d+)?$/),
        expect.stringMatching(/^registry\.k8s\.io\/etcd:\d+\.\d+\.\d+-\d+$/),
      ]);
    }
  });

  it('pack the disk as a containerDisk owned by qemu (uid 107) under /disk/', () => {
    const containerfile = readFileSync(join(IMAGES, 'Containerfile'), 'utf8');
    expect(containerfile).toMatch(/^FROM scratch$/m);
    expect(containerfile).toMatch(/^ADD --chown=107:107 \$\{DISK\} \/disk\//m);
  });
});

describe('shell scripts of the real path', { timeout: 120_000 }, () => {
  it('pass shellcheck', () => {
    const files = [join(HACK, 'e2e-real.sh'), join(IMAGES, 'bake.sh')];
    const r = spawnSync(SHELLCHECK, ['-x', ...files], { encoding: 'utf8' });
    if (r.error) throw new Error(`${SHELLCHECK} is missing: apt-get install shellcheck`);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
