import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl as runKubectl, type KubectlResult } from '../helpers/kubectl.js';

/**
 * `kubectl describe` tells a VM's story from the Events the sim's KubeVirt,
 * scheduler and kubelet record, and `kubectl logs` of the launcher pod shows
 * virt-launcher and the guest's console, cloud-init included.
 */
// Each case runs several kubectl processes (and boots VMs): minutes on a loaded machine.
describe('kubectl describe and logs against the sim', { timeout: 120_000 }, () => {
  let sim: SimHandle;
  let dir: string;
  const kubectl = (args: string[], stdin?: string): Promise<KubectlResult> =>
    runKubectl(sim.kubeconfigPath, args, { cacheDir: join(dir, 'kube-cache'), stdin });
  const ok = async (args: string[], stdin?: string): Promise<string> => {
    const r = await kubectl(args, stdin);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  let pod: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-kubectl-describe-'));
    sim = await startSim({ dir, speed: 200, guests: false, nodes: 1, nodeMemory: 2 * 2 ** 30 });
    await ok(['create', 'namespace', 'story']);
    const vm = (name: string, guest: string) =>
      JSON.stringify({
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachine',
        metadata: { name, namespace: 'story' },
        spec: {
          runStrategy: 'Always',
          template: {
            spec: {
              domain: { devices: {}, memory: { guest } },
              volumes: [
                {
                  name: 'root',
                  containerDisk: { image: 'quay.io/kubevirt/cirros-container-disk-demo' },
                },
              ],
            },
          },
        },
      });
    await ok(['apply', '-f', '-'], vm('web', '128Mi'));
    await ok(['apply', '-f', '-'], vm('huge', '64Gi'));
    for (let i = 0; i < 200; i++) {
      const ready = await ok([
        'get',
        'vmi',
        'web',
        '-n',
        'story',
        '-o',
        'jsonpath={.status.phase}',
      ]);
      if (ready === 'Running') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    pod = (
      await ok(['get', 'pods', '-n', 'story', '-l', 'vm.kubevirt.io/name=web', '-o', 'name'])
    ).trim();
    await new Promise((r) => setTimeout(r, 600)); // the simulated bootstrap (90 s / 200)
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('describe vm and vmi show what virt-controller and virt-handler did', async () => {
    const vm = await ok(['describe', 'vm', 'web', '-n', 'story']);
    expect(vm).toMatch(
      /Normal\s+SuccessfulCreate\s+.*virtualmachine-controller\s+Started the virtual machine by creating the new virtual machine instance web/,
    );
    const vmi = await ok(['describe', 'vmi', 'web', '-n', 'story']);
    expect(vmi).toMatch(
      /Normal\s+SuccessfulCreate\s+.*virtualmachine-controller\s+Created virtual machine pod virt-launcher-web-/,
    );
    expect(vmi).toMatch(/Normal\s+Started\s+.*virt-handler\s+VirtualMachineInstance started\./);
  });

  it('the launcher pod is scheduled and Running, and describe says how', async () => {
    const wide = await ok(['get', pod, '-n', 'story', '-o', 'wide', '--no-headers']);
    expect(wide).toMatch(
      /^virt-launcher-web-\w+\s+2\/2\s+Running\s+0\s+\S+\s+10\.244\.\d+\.\d+\s+sim-node-1\s/,
    );
    const described = await ok(['describe', pod, '-n', 'story']);
    expect(described).toMatch(
      /Normal\s+Scheduled\s+.*default-scheduler\s+Successfully assigned story\/virt-launcher-web-\w+ to sim-node-1/,
    );
    expect(described).toMatch(/Normal\s+Started\s+.*kubelet\s+Started container compute/);
  });

  it('an unschedulable VM shows the scheduler’s warning on its launcher pod', async () => {
    const hugePod = (
      await ok(['get', 'pods', '-n', 'story', '-l', 'vm.kubevirt.io/name=huge', '-o', 'name'])
    ).trim();
    const described = await ok(['describe', hugePod, '-n', 'story']);
    expect(described).toMatch(
      /Warning\s+FailedScheduling\s+.*default-scheduler\s+0\/1 nodes are available: 1 Insufficient memory\./,
    );
    expect(await ok(['get', 'vm', 'huge', '-n', 'story', '--no-headers'])).toMatch(
      /ErrorUnschedulable/,
    );
  });

  it('logs of the launcher pod show virt-launcher and the guest console with cloud-init', async () => {
    const logs = await ok(['logs', pod, '-n', 'story']);
    expect(logs).toContain('"component":"virt-launcher"');
    expect(logs).toContain('"msg":"Domain started."');
    expect(logs).toMatch(
      /cloud-init\[\d+\]: Cloud-init v\. [\d.]+ finished at .*DataSourceNoCloud/,
    );
    const tail = await ok(['logs', pod, '-n', 'story', '--tail=1']);
    expect(tail.trim().split('\n')).toHaveLength(1);
    const wrong = await kubectl(['logs', pod, '-n', 'story', '-c', 'nope']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('container nope is not valid for pod');
  });
});
