import type { Command } from 'commander';
import { startSim } from '../../sim/index.js';

/** `labvirt sim`: a standalone simulated KubeVirt cluster, until Ctrl-C. */
export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run a standalone simulated KubeVirt host cluster and print its kubeconfig path')
    .option(
      '--dir <dir>',
      'where the kubeconfig, guests.json and guest sandboxes go',
      '.labvirt/sim',
    )
    .option('--port <port>', 'HTTPS port (0: any free port)', '0')
    .option('--speed <factor>', 'how much faster than a real cluster VMs boot', '1')
    .option('--nodes <n>', 'simulated nodes', '4')
    .option('--node-cpu <cores>', 'CPU per node', '64')
    .option('--node-memory <GiB>', 'memory per node in GiB', '256')
    .option('--no-guests', 'do not start SSH guests for running VMIs')
    .action(async (opts: Record<string, string | boolean>) => {
      const sim = await startSim({
        dir: String(opts.dir),
        port: Number(opts.port),
        speed: Number(opts.speed),
        nodes: Number(opts.nodes),
        nodeCpu: Number(opts.nodeCpu),
        nodeMemory: Number(opts.nodeMemory) * 2 ** 30,
        guests: Boolean(opts.guests),
      });
      console.log(`simulated KubeVirt cluster at ${sim.url}`);
      console.log(`kubeconfig: ${sim.kubeconfigPath}`);
      console.log(`guest address map: ${sim.guestMapPath}`);
      console.log('Ctrl-C stops it.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await sim.stop();
    });
}
