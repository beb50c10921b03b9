/**
 * The two server sides of the OpenSSH gateway bench, each in its own process
 * (`node --import tsx bench/gateway-procs.ts guests|gateway`), so that the
 * clients (OpenSSH `ssh`), the gateway and the guests never share a core's
 * event loop. Settings come in BENCH_GW (JSON); each prints one JSON line
 * once it serves, then runs until stdin closes.
 */
import { startGateway, type GatewaySession } from '../src/ssh/index.js';
import { GuestFarm } from '../test/sim-guest/fixtures.js';

interface Settings {
  envs: number;
  sessions: number;
  labvirt: { private: string; public: string };
  student: { public: string };
  hostKey: string;
  /** For the gateway: the guests' ip → loopback port. */
  guests?: Record<string, number>;
}

const role = process.argv[2];
const settings = JSON.parse(process.env.BENCH_GW ?? '{}') as Settings;
let stop: () => Promise<void>;

if (role === 'guests') {
  const farm = new GuestFarm();
  const guests: Record<string, number> = {};
  for (let i = 0; i < settings.envs; i++) {
    // The gateway logs in as student with labvirt's key, as after a claim.
    const g = await farm.start({
      labvirt: [settings.labvirt.public],
      student: [settings.student.public, settings.labvirt.public],
    });
    guests[g.ip] = g.guest.port;
  }
  console.log(JSON.stringify({ guests }));
  stop = () => farm.stopAll();
} else if (role === 'gateway') {
  const guests = settings.guests ?? {};
  const ips = Object.keys(guests);
  const sessions = new Map<string, GatewaySession>();
  for (let i = 0; i < settings.sessions; i++) {
    const id = `s-${String(i).padStart(10, '0')}`;
    sessions.set(id, {
      sessionId: id,
      student: `student${i}`,
      envId: `env${i % ips.length}`,
      expiresAt: new Date(Date.now() + 3600_000),
      publicKeys: [settings.student.public],
      nodes: [{ node: 'control-plane', ip: ips[i % ips.length]! }],
    });
  }
  const gw = await startGateway({
    hostKey: settings.hostKey,
    host: '127.0.0.1',
    port: 0,
    directory: { lookup: async (id) => sessions.get(id) },
    clientKey: settings.labvirt.private,
    resolve: (ip, port) => ({ host: '127.0.0.1', port: port === 22 ? guests[ip]! : port }),
  });
  console.log(JSON.stringify({ port: gw.port }));
  stop = () => gw.close();
} else {
  throw new Error('usage: gateway-procs.ts guests|gateway');
}

process.stdin.resume();
process.stdin.on('end', () => {
  void stop().finally(() => process.exit(0));
});
