import { isIP } from 'node:net';
import cron from 'node-cron';
import { z } from 'zod';
import { cidrsOverlap, hasHostBits, networkOf, parseCidr } from './cidr.js';

/** A node-cron expression (5 fields, or 6 with seconds). */
const cronExpression = z
  .string()
  .refine(
    (v) => cron.validate(v),
    'a cron expression such as "*/5 * * * *" (minute hour day month weekday)',
  );

/** Kubernetes quantity such as `1536Mi`, `1Gi`, `2`, `500m`. */
const quantity = z
  .string()
  .regex(
    /^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/,
    'a Kubernetes quantity such as 1Gi or 500m',
  );

const cidr = z
  .string()
  .refine((v) => parseCidr(v) !== undefined, 'an IPv4 CIDR such as 10.243.0.0/16')
  .refine(
    (v) => {
      const c = parseCidr(v);
      return c === undefined || !hasHostBits(c);
    },
    {
      error: (issue) => {
        const c = typeof issue.input === 'string' ? parseCidr(issue.input) : undefined;
        return `a network address with its host bits zero${c ? `: did you mean ${networkOf(c)}?` : ''}`;
      },
    },
  );

/** An IANA time zone such as Europe/Berlin (what node-cron and Intl accept). */
const timeZone = z.string().refine((v) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: v });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone such as "Europe/Berlin" or "UTC"');

/** An address to listen on: an IP, not a host name (which could resolve anywhere). */
const listenAddress = z
  .string()
  .refine(
    (v) => isIP(v) !== 0,
    'an IP address to listen on, such as 0.0.0.0 (every interface) or 127.0.0.1',
  );

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Kubernetes label key: `[prefix/]name`. */
function isLabelKey(k: string): boolean {
  const slash = k.lastIndexOf('/');
  const name = slash < 0 ? k : k.slice(slash + 1);
  const prefix = slash < 0 ? undefined : k.slice(0, slash);
  return (
    LABEL_NAME.test(name) &&
    (prefix === undefined || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix)))
  );
}
const labelValue = z
  .string()
  .regex(
    /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/,
    'a Kubernetes label value (letters, digits, -_. ; at most 63 characters, starting and ending with a letter or digit)',
  );

/** Minor version of Kubernetes, e.g. "1.30". */
const KUBERNETES_MINOR_EXPECTED =
  'a Kubernetes minor version such as "1.30", in quotes (unquoted, YAML reads 1.30 as the number 1.3)';
const kubernetesMinor = z
  .string({ error: KUBERNETES_MINOR_EXPECTED })
  .regex(/^1\.[0-9]{2}$/, KUBERNETES_MINOR_EXPECTED);

/** The name of an environment variable that holds a secret (never the secret itself). */
const envVarName = (fallback: string) =>
  z
    .string()
    .regex(
      /^[A-Z_][A-Z0-9_]*$/,
      `the name of an environment variable such as ${fallback} (capital letters, digits, "_"), not the secret itself`,
    )
    .default(fallback);

const dnsLabelPrefix = z
  .string()
  .regex(
    /^[a-z]([a-z0-9-]{0,18}[a-z0-9-])?$/,
    'lowercase letters, digits and dashes, starting with a letter, at most 20 characters',
  );

const logLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
/** labvirt's modules that log under their own name (`component` in each line). */
export const LOG_MODULES = [
  'api',
  'gateway',
  'executor',
  'kube',
  'kube-events',
  'orchestrator',
] as const;

export const roleResourcesSchema = z.strictObject({
  /** Guest vCPUs (what the guest OS sees). */
  cpus: z.number().int().min(1).max(16),
  /** Guest memory. */
  memory: quantity,
  /** CPU limit of the virt-launcher pod (host-side cap). */
  cpuLimit: quantity.default('1'),
  /**
   * Writable disk for containerd's images and the kubelet (an `emptyDisk`
   * mounted on /var/lib/containerd and /var/lib/kubelet): the stock Ubuntu
   * containerDisk has about 2 GiB free. Counted in the env's quota as
   * ephemeral storage of the launcher pod.
   */
  dataDisk: quantity.default('20Gi'),
});

/** A proxy URL as apt, curl and containerd read it (no quotes, spaces or backslashes). */
const proxyUrl = z
  .url({ protocol: /^https?$/, error: 'an http(s) URL such as http://proxy.example.org:3128' })
  .refine((v) => !/[\s'"\\]/.test(v), 'no quotes, spaces or backslashes');

/** The host cluster's DNS servers the env's VMs may reach (egress NetworkPolicy peers). */
export const hostDnsSchema = z.strictObject({
  /**
   * `kube-dns`: pods labelled `k8s-app: kube-dns` in kube-system (kubeadm,
   * most managed clusters); `nodelocaldns`: those plus NodeLocal DNSCache's
   * 169.254.20.10; `openshift`: the pods of the `openshift-dns` namespace
   * (port 5353). The fields below replace the preset's.
   */
  preset: z.enum(['kube-dns', 'nodelocaldns', 'openshift']).default('kube-dns'),
  /** Namespace of the DNS pods (instead of the preset's). */
  namespace: z.string().min(1).optional(),
  /** Labels of the DNS pods (instead of the preset's). */
  podLabels: z.record(z.string(), z.string()).optional(),
  /** Ports the DNS pods listen on (instead of the preset's). */
  ports: z.array(z.number().int().min(1).max(65535)).min(1).optional(),
  /** Addresses of DNS servers that are not pods (node-local caches), allowed besides the pods. */
  addresses: z.array(cidr).optional(),
});

export const flavorSchema = z.strictObject({
  /** Kubernetes minor version installed by cloud-init, e.g. "1.30". */
  kubernetesVersion: kubernetesMinor,
  /** 1 = control plane only, 3 = control plane and two workers. */
  nodes: z.union([z.literal(1), z.literal(3)], {
    error: '1 (a control plane only) or 3 (a control plane and two workers)',
  }),
  /** Warm envs to keep ready. */
  minWarm: z.number().int().min(0).max(1000).default(2),
  /** Hard cap on envs of this flavor in any state. */
  maxTotal: z.number().int().min(1).max(5000).default(10),
  /** containerDisk image; a pre-baked golden image skips package installs. */
  image: z.string().min(1).optional(),
  /** Set when `image` already carries kubeadm, kubelet, kubectl and containerd. */
  goldenImage: z.boolean().default(false),
});

export const scheduledTargetSchema = z.strictObject({
  /** Human name shown in pool status, e.g. "Tuesday class". */
  name: z.string().min(1),
  /** node-cron expression for when the class starts, e.g. "0 9 * * 2". */
  cron: cronExpression,
  /** Time zone of the cron expression (IANA name); the host's when absent. */
  timezone: timeZone.optional(),
  /** The flavor whose pool grows for the class. */
  flavor: z.string().min(1),
  /** Warm envs wanted when the class starts. */
  minWarm: z.number().int().min(1).max(1000),
  /** How long before the start the pool begins to grow. */
  leadMinutes: z
    .number()
    .int()
    .min(0)
    .max(24 * 60)
    .default(30),
  /** How long after the start the raised target holds. */
  holdMinutes: z
    .number()
    .int()
    .min(1)
    .max(24 * 60)
    .default(120),
});

// A section left out is `.prefault({})`: the empty section is parsed, so each
// setting's default is written once, on the setting (`.default` would take a
// second copy of every value, unparsed).
export const configSchema = z
  .strictObject({
    /** Prefix of every env namespace on the host cluster. */
    namespacePrefix: dnsLabelPrefix.default('lab-'),
    /** Folder of the lab scenarios (one folder per lab with a lab.yaml). */
    labsDir: z.string().min(1).default('labs'),
    /**
     * Which scripts of each lab to run: `standard` (the real ones, for real
     * VMs) or `sim` (each lab's fixture-friendly variants, for the simulator's
     * guests, which have no kubectl or systemd).
     */
    labScripts: z.enum(['standard', 'sim']).default('standard'),
    /** Level of labvirt's JSON logs (pino); secrets are always redacted. */
    logLevel: logLevelSchema.default('info'),
    /**
     * Levels per module, over `logLevel`: `api`, `gateway`, `executor`,
     * `kube`, `kube-events`, `orchestrator` (pool and sessions), e.g. `{ gateway: debug }`.
     */
    logLevels: z.partialRecord(z.enum(LOG_MODULES), logLevelSchema).default({}),
    kube: z
      .strictObject({
        /** Path to the host cluster's kubeconfig; in-cluster config when absent and running in a pod. */
        kubeconfig: z.string().min(1).optional(),
        /** Context of the kubeconfig to use; its current context when absent. */
        context: z.string().min(1).optional(),
        /**
         * A JSON file mapping guest `ip:port` to the `host:port` that reaches it
         * (`{"10.244.0.7:22": "127.0.0.1:40123"}`), for when VM addresses are
         * not routable from labvirt (the simulator writes one). Unset: direct.
         */
        guestAddressMap: z.string().min(1).optional(),
        /**
         * The ClusterRole holding what labvirt may do inside an env Namespace
         * (deploy/rbac.yaml's `labvirt-env`); labvirt binds it into each env
         * Namespace it creates, and holds no such rights anywhere else.
         */
        envClusterRole: z
          .string()
          .regex(/^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$/, 'a ClusterRole name')
          .max(253)
          .default('labvirt-env'),
      })
      .prefault({}),
    redis: z
      .strictObject({
        /** Redis >= 6.2 with maxmemory-policy noeviction; a password in the URL is never logged. */
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
          .default('redis://127.0.0.1:6379'),
        /** Prefix of every Redis key and BullMQ queue, so several installs can share one Redis. */
        prefix: z
          .string()
          .regex(/^[a-zA-Z0-9_-]+$/, 'letters, digits, dashes and underscores')
          .default('labvirt'),
      })
      .prefault({}),
    flavors: z
      .record(
        z.string().regex(/^v1\.[0-9]{2}-(1|3)node$/, 'a flavor name such as v1.30-3node'),
        flavorSchema,
      )
      .default({
        'v1.30-3node': {
          kubernetesVersion: '1.30',
          nodes: 3,
          minWarm: 2,
          maxTotal: 10,
          goldenImage: false,
        },
        'v1.31-1node': {
          kubernetesVersion: '1.31',
          nodes: 1,
          minWarm: 1,
          maxTotal: 10,
          goldenImage: false,
        },
      }),
    schedules: z.array(scheduledTargetSchema).default([]),
    vm: z
      .strictObject({
        /** Default containerDisk for every flavor without its own image. */
        image: z.string().min(1).default('quay.io/containerdisks/ubuntu:22.04'),
        /** The control plane: at least 2Gi of memory (kubeadm's minimum). */
        controlPlane: roleResourcesSchema.default({
          cpus: 2,
          memory: '2Gi',
          cpuLimit: '1',
          dataDisk: '20Gi',
        }),
        worker: roleResourcesSchema.default({
          cpus: 1,
          memory: '1Gi',
          cpuLimit: '1',
          dataDisk: '20Gi',
        }),
        /**
         * Registry mirrors for containerd in the guests, by registry host
         * (`docker.io`, `registry.k8s.io`, `quay.io`), each a list of mirror
         * URLs tried in order before the registry itself.
         */
        registryMirrors: z
          .record(
            z
              .string()
              .regex(
                /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$/,
                'a registry host such as docker.io',
              ),
            z
              .array(z.url({ protocol: /^https?$/, error: 'an http(s) URL of a registry mirror' }))
              .min(1),
          )
          .default({}),
        /**
         * The image lock (`labvirt images lock` writes it): rendering pins every
         * image it lists by digest. Default: vm-templates/images/images.lock.yaml
         * when that file exists.
         */
        imagesLock: z.string().min(1).optional(),
        /** An HTTP(S) proxy the guests use for apt, curl and containerd. */
        proxy: z
          .strictObject({
            /** Proxy for http:// URLs. */
            http: proxyUrl.optional(),
            /** Proxy for https:// URLs. */
            https: proxyUrl.optional(),
            /**
             * Hosts and domains reached without the proxy, besides the ones
             * labvirt always adds (localhost, the env's CIDRs, `.svc` and the
             * host cluster's domain).
             */
            noProxy: z
              .array(z.string().regex(/^[A-Za-z0-9.*/:-]+$/, 'a host, domain, IP or CIDR'))
              .default([]),
          })
          .optional(),
      })
      .prefault({}),
    network: z
      .strictObject({
        /** Pod CIDR inside each student cluster; must not overlap the host cluster's. */
        podCidr: cidr.default('10.243.0.0/16'),
        /** Service CIDR inside each student cluster; must not overlap the host cluster's. */
        serviceCidr: cidr.default('10.95.0.0/16'),
        /** Ranges env VMs may not reach (besides their own env): private networks, link-local (cloud metadata) and Azure's platform address by default. */
        deniedEgressCidrs: z
          .array(cidr)
          .min(
            1,
            'must not be empty: with no denied ranges env VMs reach cloud metadata (169.254.169.254) and private networks; list the ranges to deny, or remove the key for the defaults (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, 168.63.129.16/32)',
          )
          .default([
            '10.0.0.0/8',
            '172.16.0.0/12',
            '192.168.0.0/16',
            '100.64.0.0/10',
            '169.254.0.0/16',
            // Azure's platform address (wireserver, its DNS and metadata): public, so not in the above.
            '168.63.129.16/32',
          ]),
        /** Labels of labvirt's own pods (the SSH gateway and executor), allowed to reach port 22. */
        gatewayPodLabels: z
          .record(z.string(), labelValue)
          .superRefine((labels, ctx) => {
            if (Object.keys(labels).length === 0) {
              ctx.addIssue({
                code: 'custom',
                message:
                  "must name at least one label: an empty selector would let every pod of gatewayNamespace reach the VMs' SSH port",
              });
            }
            for (const key of Object.keys(labels)) {
              if (!isLabelKey(key)) {
                ctx.addIssue({
                  code: 'custom',
                  path: [key],
                  message:
                    'a Kubernetes label key such as app.kubernetes.io/name (letters, digits, -_. ; at most 63 characters, with an optional DNS prefix and /)',
                });
              }
            }
          })
          .default({ 'app.kubernetes.io/name': 'labvirt' }),
        /** Namespace labvirt runs in on the host cluster. */
        gatewayNamespace: z
          .string()
          .regex(
            /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
            'a Kubernetes namespace name (lowercase letters, digits and -, at most 63 characters)',
          )
          .default('labvirt'),
        /** Allow KubeVirt's virt-api to reach port 22 (`virtctl ssh`). */
        allowVirtctlSsh: z.boolean().default(false),
        /** The host cluster's DNS, which the guests use to find their control plane. */
        hostDns: hostDnsSchema.prefault({}),
        /** The host cluster's DNS domain (`cluster.local` unless its kubelets say otherwise). */
        hostClusterDomain: z
          .string()
          .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'a DNS domain such as cluster.local')
          .default('cluster.local'),
        /**
         * Resolvers the student clusters' CoreDNS forwards to (never the host
         * cluster's DNS, which would tell them other envs' names).
         */
        upstreamDns: z
          .array(z.ipv4({ error: 'an IPv4 address such as 1.1.1.1' }))
          .min(1)
          .max(3)
          .default(['1.1.1.1', '9.9.9.9']),
      })
      .prefault({}),
    ssh: z
      .strictObject({
        /** `gateway`: students reach VMs through labvirt's SSH gateway; `nodeport`: one NodePort per env. */
        mode: z.enum(['gateway', 'nodeport']).default('gateway'),
        /** Port of the SSH gateway's listener (0: any free port). */
        gatewayPort: z.number().int().min(0).max(65535).default(2222),
        /** Host name students are told to connect to. */
        publicHost: z.string().min(1).default('127.0.0.1'),
        /** Address the SSH gateway listens on. */
        bindAddress: listenAddress.default('0.0.0.0'),
        /** Where the gateway host key is kept: a file path, or `secret:<namespace>/<name>` on the host cluster. */
        hostKey: z.string().min(1).default('.labvirt/gateway_host_key'),
        /** The web terminal bridge's key for logging into the SSH gateway on a student's behalf (same forms as hostKey). No VM trusts it: each env has its own key, kept with its PKI. */
        orchestratorKey: z.string().min(1).default('.labvirt/orchestrator_key'),
        /** The SSH gateway's own key for its hop to a student's nodes (same forms as hostKey): each claim installs its public half for `student` on every node. A gateway-only process reads it as a file (the Secret mounted). */
        gatewayClientKey: z.string().min(1).default('.labvirt/gateway_client_key'),
        /** A student connection idle this long is closed. */
        idleTimeoutMinutes: z
          .number()
          .int()
          .min(1)
          .max(24 * 60)
          .default(30),
        /** Timeout of one lab script (setup, check, solve, prepare) unless the lab sets its own. */
        scriptTimeoutSeconds: z.number().int().min(1).max(3600).default(120),
        /** A gateway connection that has not logged in within this time is closed (sshd's LoginGraceTime). */
        authTimeoutSeconds: z.number().int().min(1).max(600).default(30),
        /** Gateway connections not yet logged in, from all addresses together; more are closed at once. */
        maxUnauthenticated: z.number().int().min(1).max(100_000).default(512),
        /** Gateway connections not yet logged in from one source address (a classroom behind NAT shares one). */
        maxUnauthenticatedPerSource: z.number().int().min(1).max(100_000).default(64),
      })
      .prefault({}),
    sessions: z
      .strictObject({
        /** Sessions one student may hold at once. */
        maxPerStudent: z.number().int().min(1).max(10).default(1),
        /** Session length when the lab sets no time limit. */
        defaultMinutes: z
          .number()
          .int()
          .min(5)
          .max(24 * 60)
          .default(60),
        /** Longest a session may last, extensions included. */
        maxMinutes: z
          .number()
          .int()
          .min(5)
          .max(7 * 24 * 60)
          .default(240),
        /** Time one extension adds. */
        extendMinutes: z
          .number()
          .int()
          .min(1)
          .max(24 * 60)
          .default(30),
        /** How long before expiry the student is warned. */
        warnBeforeMinutes: z.number().int().min(1).max(60).default(10),
        /** When expired sessions are swept (node-cron). */
        expiryCron: cronExpression.default('* * * * *'),
        /**
         * Time one node's inventory of the lab tools may take at prepare on a
         * quiet guest (src/sessions/integrity.ts); a slow guest gets one more
         * try with 3× this, as a lab setup step does.
         */
        toolInventoryTimeoutSeconds: z.number().int().min(1).max(600).default(60),
      })
      .prefault({}),
    pool: z
      .strictObject({
        /** When the pool is topped up to its warm targets (node-cron). */
        replenishCron: cronExpression.default('*/1 * * * *'),
        /** When labvirt's indexes are checked against the cluster (node-cron). */
        reconcileCron: cronExpression.default('*/5 * * * *'),
        /**
         * After an env's state could not be written to the host (its `active`
         * label at a claim, an extended expiry), a reconcile that writes it
         * runs this much later, then again after twice as long while the host
         * still cannot answer.
         */
        hostRepairDelaySeconds: z.number().min(0.1).max(3600).default(30),
        /** Envs being provisioned at once across all replicas (protects the host cluster). */
        maxProvisioning: z.number().int().min(1).max(500).default(10),
        /** Jobs one worker process runs at once. */
        workerConcurrency: z.number().int().min(1).max(200).default(5),
        /**
         * Prepare jobs (student key, lab setup) one worker process runs at once.
         * They wait on SSH, not the CPU, and a class arrives at once: far more
         * than the provisioning and teardown jobs of workerConcurrency.
         */
        prepareConcurrency: z.number().int().min(1).max(2000).default(200),
        /**
         * How long one env may take to provision before the attempt fails. The
         * guests' own retries (kubeadm, joins, waiting for nodes) stop within
         * the same time, counted from their first boot.
         */
        provisionDeadlineSeconds: z.number().int().min(10).max(7200).default(1200),
        /** Attempts per env before it is failed and torn down. */
        provisionAttempts: z.number().int().min(1).max(10).default(3),
        /** How long a crashed worker's job stays locked before another worker takes it over. */
        jobLockSeconds: z.number().int().min(2).max(600).default(30),
        /** Times a student is moved to another env when the lab setup fails, before giving up. */
        maxSetupMoves: z.number().int().min(0).max(10).default(2),
        /**
         * Longest pause between provisioning's looks at the env's VMIs while they
         * boot (the shared VMI watch wakes it at every change; no API read).
         */
        pollSeconds: z.number().min(0.05).max(60).default(2),
        /** On SIGTERM, how long running jobs may finish before they are handed back to the queue. */
        shutdownGraceSeconds: z.number().min(0).max(3600).default(30),
      })
      .prefault({}),
    api: z
      .strictObject({
        /** Address the HTTP API listens on (0.0.0.0 in a pod). */
        host: z.string().min(1).default('127.0.0.1'),
        /** Port of the HTTP API (also /metrics, /healthz, /readyz). */
        port: z.number().int().min(0).max(65535).default(8080),
        /** Name of the environment variable holding the API bearer token. */
        tokenEnv: envVarName('LABVIRT_API_TOKEN'),
        /**
         * The API's address as students' browsers reach it (e.g.
         * `https://labvirt.example.org`); when set, Slack hands out private
         * keys as one-time download links on it instead of files.
         */
        publicUrl: z
          .url({
            protocol: /^https?$/,
            error: 'an http(s) URL such as https://labvirt.example.org',
          })
          .optional(),
        /** Requests a minute one API token may make, all students together (all replicas). */
        requestsPerMinutePerToken: z.number().int().min(1).max(1_000_000).default(3000),
        /** Requests a minute made for one student (`X-Labvirt-Student` or a start's `student`). */
        requestsPerMinutePerStudent: z.number().int().min(1).max(100_000).default(60),
        /** Checks running at once in one replica (each holds SSH sessions in a student's VMs); more get 429. */
        maxConcurrentChecks: z.number().int().min(1).max(1000).default(16),
      })
      .prefault({}),
    web: z
      .strictObject({
        /**
         * Operators who sign in to `/admin` with a username and password
         * (beside the API token). Make a hash with `labvirt web hash-password`.
         */
        operators: z
          .array(
            z.strictObject({
              /** The name the operator signs in with (shown in audit lines and on the page). */
              username: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, {
                error: 'letters, digits, . _ @ - (at most 64)',
              }),
              /** scrypt hash of the password, from `labvirt web hash-password` (never the password). */
              passwordHash: z
                .string()
                .regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/, {
                  error: 'a hash printed by `labvirt web hash-password` (scrypt$…)',
                }),
            }),
          )
          .default([])
          .refine((list) => new Set(list.map((o) => o.username)).size === list.length, {
            error: 'each operator username once',
          }),
        /** Sign-in attempts a minute at /admin from one address, and for one username (all replicas). */
        loginAttemptsPerMinute: z.number().int().min(1).max(1000).default(10),
      })
      .prefault({}),
    slack: z
      .strictObject({
        /** Names of the environment variables holding Slack secrets (never the secrets themselves). */
        signingSecretEnv: envVarName('SLACK_SIGNING_SECRET'),
        /** Name of the variable holding the Slack bot token. */
        botTokenEnv: envVarName('SLACK_BOT_TOKEN'),
        /** Socket Mode's app-level token (`xapp-…`, scope connections:write). */
        appTokenEnv: envVarName('SLACK_APP_TOKEN'),
        /** `http`: Slack posts to `/slack/events`; `socket`: labvirt connects out (no public URL). */
        mode: z.enum(['http', 'socket']).default('http'),
        /** Port of `/slack/events` in HTTP mode; unset: served on the API's port. */
        port: z.number().int().min(0).max(65535).optional(),
        /** The Slack Web API base URL (a fake Slack in tests and staging). */
        apiUrl: z
          .url({ protocol: /^https?$/, error: 'an http(s) URL ending in /api/' })
          .default('https://slack.com/api/'),
        /** The Slack slash command students type. */
        command: z
          .string()
          .regex(/^\/[a-z0-9_-]+$/)
          .default('/lab'),
        /** Slack user ids (`U…`/`W…`) who see the pool, the line and failures. */
        operators: z
          .array(z.string().regex(/^[UW][A-Z0-9]{2,}$/, 'a Slack user id such as U024BE7LH'))
          .default([]),
        /** A Slack user group (`S…`) whose members are operators too. */
        operatorGroup: z
          .string()
          .regex(/^S[A-Z0-9]{2,}$/, 'a Slack user group id such as S0614TZR7')
          .optional(),
        /** Commands and clicks one student may make per minute (all replicas together). */
        commandsPerMinute: z.number().int().min(1).max(600).default(20),
        /** How long a one-time private-key download link lives. */
        keyLinkMinutes: z.number().int().min(1).max(60).default(10),
        /**
         * Slack Web API calls per second for students' DMs, across all
         * replicas (Slack's limits are per workspace; 429s pause delivery too).
         */
        notifyCallsPerSecond: z.number().int().min(1).max(100).default(10),
        /**
         * Least seconds between two edits of a student's DM that only move
         * their place in line; changes of state go out at once. 0: every move.
         */
        linePositionEditSeconds: z.number().min(0).max(600).default(15),
      })
      .prefault({}),
    sync: z
      .strictObject({
        /** Mirror the NodePort/LoadBalancer Services students create in their clusters onto the host. */
        enabled: z.boolean().default(true),
        /** Address students are told to use for mirrored ports; default: the host nodes' addresses. */
        publicHost: z.string().min(1).optional(),
        /** Mirrored ports per env (the env's `services.nodeports` quota follows it). */
        maxPortsPerEnv: z.number().int().min(0).max(50).default(5),
        /** Protocols of student ports that may be published. */
        protocols: z
          .array(z.enum(['TCP', 'UDP', 'SCTP']))
          .min(1)
          .default(['TCP', 'UDP']),
        /** Student nodePorts that may be published (inclusive). */
        studentPortRange: z
          .strictObject({
            /** Lowest student nodePort published. */
            min: z.number().int().min(1).max(65535),
            /** Highest student nodePort published. */
            max: z.number().int().min(1).max(65535),
          })
          .refine((r) => r.min <= r.max, 'min must not exceed max')
          .default({ min: 30000, max: 32767 }),
        /** Who may connect to mirrored ports (NetworkPolicy ipBlocks). */
        allowedSources: z.array(cidr).min(1).default(['0.0.0.0/0']),
        /** Full re-list of every watched student cluster, about this often (the watchdog of its watch). */
        resyncSeconds: z.number().min(1).max(3600).default(300),
        /** Backoff between reconnects to a student API server that is down. */
        retryInitialSeconds: z.number().min(0.05).max(60).default(1),
        /** Longest wait between reconnects to a student API server that is down. */
        retryMaxSeconds: z.number().min(0.1).max(600).default(30),
        /**
         * Where the TLS session to a student's API server runs. `guest`: an
         * `openssl s_client` on the control plane, started over labvirt's SSH
         * connection, checks the server against the env's CA; labvirt speaks
         * HTTP to it over SSH and holds no TLS state (about 75 KiB less per
         * watched env). `labvirt`: TLS in labvirt's process over an SSH
         * forward (for guest images without openssl).
         */
        apiTls: z.enum(['guest', 'labvirt']).default('guest'),
        /**
         * One replica runs the sync at a time (a lease in Redis), since each
         * one keeps an SSH relay and a watch per active env. The lease lasts
         * this long unrenewed: a replica that dies is replaced within about
         * this time; mirrors stay in place meanwhile.
         */
        leaseSeconds: z.number().min(1).max(600).default(15),
      })
      .prefault({}),
  })
  // Checks across settings. They run even when single settings are invalid
  // (`when`), so one run lists every problem; `cfg` may then hold raw input
  // where a setting failed, so each check looks before it compares.
  .superRefine((cfg, ctx) => crossChecks(cfg as unknown, ctx), { when: () => true });

type IssueSink = {
  addIssue(issue: { code: 'custom'; path: PropertyKey[]; message: string }): void;
};

function record(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : {};
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function crossChecks(input: unknown, ctx: IssueSink): void {
  const cfg = record(input);
  const flavors = record(cfg.flavors);
  for (const [name, value] of Object.entries(flavors)) {
    const flavor = record(value);
    const { kubernetesVersion: version, nodes, minWarm, maxTotal } = flavor;
    if (
      typeof version === 'string' &&
      /^1\.[0-9]{2}$/.test(version) &&
      (nodes === 1 || nodes === 3)
    ) {
      const expected = flavorName(version, nodes);
      if (name !== expected) {
        ctx.addIssue({
          code: 'custom',
          path: ['flavors', name],
          message: `flavor name must match its version and nodes: expected "${expected}"`,
        });
      }
    }
    if (isCount(minWarm) && isCount(maxTotal) && minWarm > maxTotal) {
      ctx.addIssue({
        code: 'custom',
        path: ['flavors', name, 'minWarm'],
        message: `minWarm (${minWarm}) exceeds maxTotal (${maxTotal})`,
      });
    }
  }
  const schedules = Array.isArray(cfg.schedules) ? (cfg.schedules as unknown[]) : [];
  schedules.forEach((value, i) => {
    const s = record(value);
    if (typeof s.flavor !== 'string') return;
    // A schedule's minWarm above the flavor's maxTotal is allowed: the pool
    // caps every target at maxTotal.
    if (!(s.flavor in flavors)) {
      ctx.addIssue({
        code: 'custom',
        path: ['schedules', i, 'flavor'],
        message: `unknown flavor "${s.flavor}"; known: ${Object.keys(flavors).join(', ')}`,
      });
    }
  });
  const sessions = record(cfg.sessions);
  if (
    isCount(sessions.defaultMinutes) &&
    isCount(sessions.maxMinutes) &&
    sessions.defaultMinutes > sessions.maxMinutes
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['sessions', 'defaultMinutes'],
      message: `defaultMinutes (${sessions.defaultMinutes}) exceeds maxMinutes (${sessions.maxMinutes})`,
    });
  }
  const controlPlane = record(record(cfg.vm).controlPlane);
  if (typeof controlPlane.memory === 'string' && /^[0-9]/.test(controlPlane.memory)) {
    const bytes = quantityBytes(controlPlane.memory);
    if (bytes !== undefined && bytes < 2 * 2 ** 30) {
      ctx.addIssue({
        code: 'custom',
        path: ['vm', 'controlPlane', 'memory'],
        message: `at least 2Gi: kubeadm refuses a control plane with less (got ${controlPlane.memory})`,
      });
    }
  }
  const network = record(cfg.network);
  const pod = typeof network.podCidr === 'string' ? parseCidr(network.podCidr) : undefined;
  const svc = typeof network.serviceCidr === 'string' ? parseCidr(network.serviceCidr) : undefined;
  if (pod && svc && cidrsOverlap(pod, svc)) {
    ctx.addIssue({
      code: 'custom',
      path: ['network', 'serviceCidr'],
      message: `a range that does not overlap podCidr (${String(network.podCidr)})`,
    });
  }
}

const QUANTITY_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};
function quantityBytes(q: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  return m ? Number(m[1]) * (QUANTITY_UNITS[m[2] ?? ''] ?? 1) : undefined;
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type FlavorConfig = z.output<typeof flavorSchema>;
export type RoleResources = z.output<typeof roleResourcesSchema>;
export type HostDnsConfig = z.output<typeof hostDnsSchema>;
export type ScheduledTarget = z.output<typeof scheduledTargetSchema>;

/** Canonical flavor name: `v<minor>-<nodes>node`, e.g. `v1.30-3node`. */
export function flavorName(kubernetesVersion: string, nodes: number): string {
  return `v${kubernetesVersion}-${nodes}node`;
}
