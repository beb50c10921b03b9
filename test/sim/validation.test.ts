import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  VersionApi,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateObject } from '../../src/kube/index.js';
import { itSimOnly, startTarget, type ConformanceTarget } from './target.js';

interface StatusBody {
  kind: string;
  code: number;
  reason: string;
  message: string;
  details?: { name?: string; kind?: string; causes?: { field?: string; reason?: string }[] };
}

/** The refusal a client sees: status code and the Kubernetes Status body. */
async function refusal(p: Promise<unknown>): Promise<StatusBody> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) return JSON.parse(String(err.body as string)) as StatusBody;
    throw err;
  }
  throw new Error('the write was accepted');
}

const vm = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'kubevirt.io/v1',
  kind: 'VirtualMachine',
  metadata: { name },
  spec: {
    runStrategy: 'Halted',
    template: {
      metadata: { labels: { app: name } },
      spec: {
        domain: { devices: {}, resources: { requests: { memory: '64Mi' } } },
        ...spec,
      },
    },
  },
});

/**
 * Schema validation of writes, as a real API server does it: unknown fields
 * pruned (or refused with fieldValidation=Strict), invalid objects refused
 * with 422 and every cause, nothing stored from a refused write. Runs on the
 * sim and, with LABVIRT_E2E_KUBECONFIG, on a real cluster.
 */
describe('conformance: schema validation of writes', () => {
  let target: ConformanceTarget;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let ns: string;

  beforeAll(async () => {
    target = await startTarget();
    core = target.kc.makeApiClient(CoreV1Api);
    custom = target.kc.makeApiClient(CustomObjectsApi);
    ns = await target.createNamespace('validation');
  });
  afterAll(async () => {
    await target?.stop();
  });

  /** One request with the target's own credentials, body and headers as the server sent them. */
  async function raw(
    method: string,
    path: string,
    payload?: unknown,
  ): Promise<{ status: number; body: string; warning: string }> {
    const opts: RequestOptions = {};
    await target.kc.applyToHTTPSOptions(opts);
    const server = new URL(target.kc.getCurrentCluster()!.server);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          ...opts,
          hostname: server.hostname,
          port: server.port || 443,
          method,
          path: `${server.pathname.replace(/\/$/, '')}${path}`,
          headers: { ...opts.headers, 'content-type': 'application/json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString('utf8'),
              warning: String(res.headers.warning ?? ''),
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(payload === undefined ? undefined : JSON.stringify(payload));
    });
  }

  it('refuses a Service missing a port with 422 Invalid naming the field, and stores nothing', async () => {
    const body = await refusal(
      core.createNamespacedService({
        namespace: ns,
        body: { metadata: { name: 'noport' }, spec: { ports: [{ name: 'web' } as never] } },
      }),
    );
    expect(body.code).toBe(422);
    expect(body.reason).toBe('Invalid');
    expect(body.message).toMatch(/^Service "noport" is invalid: .*spec\.ports\[0\]\.port/);
    expect(body.details?.causes?.map((c) => c.field)).toContain('spec.ports[0].port');
    const listed = await core.listNamespacedService({ namespace: ns });
    expect(listed.items.map((s) => s.metadata?.name)).not.toContain('noport');
  });

  it('refuses a bad name with the apimachinery message', async () => {
    const body = await refusal(
      core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'Bad_Name' } } }),
    );
    expect(body.code).toBe(422);
    expect(body.details?.causes?.map((c) => c.field)).toContain('metadata.name');
    expect(body.message).toContain('a lowercase RFC 1123 subdomain must consist of');
  });

  it('prunes unknown fields by default and refuses them with fieldValidation=Strict', async () => {
    // Raw requests: client-node's typed models would drop the unknown field before sending.
    const withExtra = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'extra' },
      data: { a: '1' },
      bogus: 'x',
    };
    const path = `/api/v1/namespaces/${ns}/configmaps`;
    const strict = await raw('POST', `${path}?fieldValidation=Strict`, withExtra);
    expect(strict.status).toBe(400);
    const strictBody = JSON.parse(strict.body) as StatusBody;
    expect(strictBody.reason).toBe('BadRequest');
    expect(strictBody.message).toContain('strict decoding error: unknown field "bogus"');
    await expect(core.readNamespacedConfigMap({ namespace: ns, name: 'extra' })).rejects.toThrow();

    const created = await raw('POST', path, withExtra);
    expect(created.status).toBe(201);
    expect(created.warning).toMatch(/^299 - ".*unknown field \\"bogus\\""/);
    const ignored = await raw('POST', `${path}?fieldValidation=Ignore`, {
      ...withExtra,
      metadata: { name: 'quiet' },
    });
    expect(ignored.status).toBe(201);
    expect(ignored.warning).toBe('');
    for (const name of ['extra', 'quiet']) {
      const read = JSON.parse((await raw('GET', `${path}/${name}`)).body) as Record<
        string,
        unknown
      >;
      expect(read).not.toHaveProperty('bogus');
      expect(read.data).toEqual({ a: '1' });
    }
  });

  it('refuses an update or a patch that would make an object invalid, and keeps the object', async () => {
    const cm = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'keep', labels: { tier: 'a' } }, data: { k: 'v' } },
    });
    const bad = structuredClone(cm);
    bad.metadata!.labels = { tier: 'not a valid value!' };
    const put = await refusal(
      core.replaceNamespacedConfigMap({ namespace: ns, name: 'keep', body: bad }),
    );
    expect(put.code).toBe(422);
    expect(put.details?.causes?.map((c) => c.field)).toContain('metadata.labels');
    const patched = await refusal(
      core.patchNamespacedConfigMap(
        { namespace: ns, name: 'keep', body: { data: { k: 42 } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect([400, 422]).toContain(patched.code);
    const after = await core.readNamespacedConfigMap({ namespace: ns, name: 'keep' });
    expect(after.metadata?.labels).toEqual({ tier: 'a' });
    expect(after.data).toEqual({ k: 'v' });
    expect(after.metadata?.resourceVersion).toBe(cm.metadata?.resourceVersion);
  });

  it('checks VirtualMachines against KubeVirt’s schema: wrong types are 422, unknown fields pruned', async () => {
    const wrongType = await refusal(
      custom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: ns,
        plural: 'virtualmachines',
        body: { ...vm('typo', {}), spec: { ...vm('typo', {}).spec, runStrategy: 7 } },
      }),
    );
    expect(wrongType.code).toBe(422);
    expect(wrongType.message).toMatch(/^VirtualMachine\.kubevirt\.io "typo" is invalid: /);
    expect(wrongType.details?.causes?.map((c) => c.field)).toContain('spec.runStrategy');

    const strict = await refusal(
      custom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: ns,
        plural: 'virtualmachines',
        fieldValidation: 'Strict',
        body: vm('strict', { notAField: true }),
      }),
    );
    expect(strict.code).toBe(400);
    expect(strict.message).toContain('unknown field "spec.template.spec.notAField"');

    const pruned = (await custom.createNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: ns,
      plural: 'virtualmachines',
      body: vm('pruned', { notAField: true }),
    })) as { spec: { template: { spec: Record<string, unknown> } } };
    expect(pruned.spec.template.spec).not.toHaveProperty('notAField');
    expect(pruned.spec.template.spec).toHaveProperty('domain');
  });

  itSimOnly(
    'writes statuses that KubeVirt’s schema accepts, so clients can label a running VMI',
    async () => {
      const api = { group: 'kubevirt.io', version: 'v1', namespace: ns } as const;
      const running = vm('runs', {});
      running.spec.runStrategy = 'Always';
      await custom.createNamespacedCustomObject({
        ...api,
        plural: 'virtualmachines',
        body: running,
      });
      const vmi = await (async () => {
        for (let i = 0; i < 500; i++) {
          const got = (await custom
            .getNamespacedCustomObject({ ...api, plural: 'virtualmachineinstances', name: 'runs' })
            .catch(() => undefined)) as
            { status?: { phase?: string; conditions?: { type: string }[] } } | undefined;
          if (got?.status?.conditions?.some((c) => c.type === 'AgentConnected')) return got;
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new Error('VMI never got its agent connected');
      })();
      expect(validateObject(vmi)).toEqual([]);
      const vmObj = await custom.getNamespacedCustomObject({
        ...api,
        plural: 'virtualmachines',
        name: 'runs',
      });
      expect(validateObject(vmObj)).toEqual([]);
      // No status subresource on VMIs: a client write carries status, and it must pass.
      const labelled = (await custom.patchNamespacedCustomObject(
        {
          ...api,
          plural: 'virtualmachineinstances',
          name: 'runs',
          body: { metadata: { labels: { seen: 'yes' } } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as { metadata: { labels: Record<string, string> }; status: { phase: string } };
      expect(labelled.metadata.labels.seen).toBe('yes');
      expect(labelled.status.phase).toBe('Running');
    },
  );

  it('takes only the field selectors each kind supports, as a real API server does', async () => {
    // Running VMs' virt-launcher pods are Running (with the VMI's IP), like KubeVirt's.
    const pods = await core.listNamespacedPod({
      namespace: ns,
      fieldSelector: 'status.phase!=Running',
    });
    expect(pods.items.filter((p) => p.status?.phase === 'Running')).toEqual([]);
    const onSecrets = await refusal(
      core.listNamespacedSecret({ namespace: ns, fieldSelector: 'status.phase=x' }),
    );
    expect(onSecrets.code).toBe(400);
    expect(onSecrets.message).toContain('field label not supported: status.phase');
    const onVmis = await refusal(
      custom.listNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: ns,
        plural: 'virtualmachineinstances',
        fieldSelector: 'status.phase=Running',
      }),
    );
    expect(onVmis.code).toBe(400);
    // Custom resource field selectors (default on since 1.31) changed the wording.
    const { minor } = await target.kc.makeApiClient(VersionApi).getCode();
    expect(onVmis.message).toContain(
      Number.parseInt(minor, 10) >= 31
        ? '"status.phase" is not a known field selector: only "metadata.name", "metadata.namespace"'
        : 'field label not supported: status.phase',
    );
    const byName = (await custom.listNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: ns,
      plural: 'virtualmachines',
      fieldSelector: 'metadata.name=pruned',
    })) as { items: { metadata: { name: string } }[] };
    expect(byName.items.map((v) => v.metadata.name)).toEqual(['pruned']);
  });

  it('refuses an unknown fieldValidation value with 422 Unsupported value', async () => {
    const body = await refusal(
      core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: 'fv' } },
        fieldValidation: 'Sometimes',
      }),
    );
    expect(body.code).toBe(422);
    expect(body.reason).toBe('Invalid');
    expect(body.message).toContain('fieldValidation: Unsupported value: "Sometimes"');
    expect(body.details?.causes).toEqual([
      expect.objectContaining({ reason: 'FieldValueNotSupported', field: 'fieldValidation' }),
    ]);
  });
});
