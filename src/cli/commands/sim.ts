import { InvalidArgumentError, type Command } from 'commander';

/** A number in [min, max] for a commander option, or a usage error naming the option. */
function numberIn(min: number, max: number, integer = false) {
  return (value: string): number => {
    const n = Number(value);
    if (
      value.trim() === '' ||
      !Number.isFinite(n) ||
      n < min ||
      n > max ||
      (integer && !Number.isInteger(n))
    )
      throw new InvalidArgumentError(
        `expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got "${value}"`,
      );
    return n;
  };
}

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
    .option('--port <port>', 'HTTPS port (0: any free port)', numberIn(0, 65535, true), 0)
    .option(
      '--speed <factor>',
      'how much faster than a real cluster VMs boot',
      numberIn(0.01, 100_000),
      1,
    )
    .option('--nodes <n>', 'simulated nodes', numberIn(1, 10_000, true), 4)
    .option('--node-cpu <cores>', 'CPU per node', numberIn(1, 100_000), 64)
    .option('--node-memory <GiB>', 'memory per node in GiB', numberIn(1, 1_000_000), 256)
    .option('--no-guests', 'do not start SSH guests for running VMIs')
    .option(
      '--guest-idle-stop <seconds>',
      "stop an idle guest's helper process after this long (0: never); the next command starts it again",
      numberIn(0, 86_400),
      0,
    )
    .action(
      async (opts: {
        dir: string;
        port: number;
        speed: number;
        nodes: number;
        nodeCpu: number;
        nodeMemory: number;
        guests: boolean;
        guestIdleStop: number;
      }) => {
        // Loaded when the command runs, not for `--help` or the client commands.
        const { startSim } = await import('../../sim/index.js');
        const sim = await startSim({
          dir: opts.dir,
          port: opts.port,
          speed: opts.speed,
          nodes: opts.nodes,
          nodeCpu: opts.nodeCpu,
          nodeMemory: opts.nodeMemory * 2 ** 30,
          guests: opts.guests,
          guestIdleStopSeconds: opts.guestIdleStop,
          // Plain pods run as on a real cluster (doctor's image pull probe).
          runPods: true,
        });
        console.log(`simulated KubeVirt cluster at ${sim.url}`);
        console.log(`kubeconfig: ${sim.kubeconfigPath}`);
        console.log(`guest address map: ${sim.guestMapPath}`);
        if (!sim.validatesKubevirt)
          console.log(
            'note: KubeVirt schemas not found (../shared/schemas/kubevirt or $LABVIRT_KUBEVIRT_SCHEMAS): VirtualMachines are not validated',
          );
        console.log('Ctrl-C stops it.');
        await new Promise<void>((resolve) => {
          process.once('SIGINT', () => resolve());
          process.once('SIGTERM', () => resolve());
        });
        await sim.stop();
      },
    );
}
