import { validate as daemonSet } from 'kubernetes-models/_schemas/IoK8sApiAppsV1DaemonSet';
import { validate as deployment } from 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment';
import { validate as statefulSet } from 'kubernetes-models/_schemas/IoK8sApiAppsV1StatefulSet';
import { validate as job } from 'kubernetes-models/_schemas/IoK8sApiBatchV1Job';
import { validate as persistentVolume } from 'kubernetes-models/_schemas/IoK8sApiCoreV1PersistentVolume';
import { validate as persistentVolumeClaim } from 'kubernetes-models/_schemas/IoK8sApiCoreV1PersistentVolumeClaim';
import { validate as storageClass } from 'kubernetes-models/_schemas/IoK8sApiStorageV1StorageClass';
import { LineCounter, parseAllDocuments } from 'yaml';
import { validateObject, type SchemaProblem } from '../kube/index.js';
import { problem } from './problems.js';
import type { LabProblem, LabScriptFile } from './types.js';

/** A here-document in a script: `kubectl apply -f - <<'YAML'` … `YAML`. */
interface HereDoc {
  /** Line of the script where the body starts (1-based). */
  line: number;
  body: string;
  /** `<<'YAML'`: the shell expands nothing in the body, so it is the YAML as sent. */
  literal: boolean;
}

// `<<` or `<<-`, then the delimiter, maybe quoted; `<<<` (a here-string) is not one.
const HEREDOC_START = /(?<!<)<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/;

export function hereDocs(content: string): HereDoc[] {
  const lines = content.split('\n');
  const out: HereDoc[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = HEREDOC_START.exec(lines[i]!);
    if (!m || /^\s*#/.test(lines[i]!)) continue;
    const [, dash, quote, delimiter] = m;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const text = dash ? lines[j]!.replace(/^\t+/, '') : lines[j]!;
      if (text === delimiter) break;
      body.push(text);
    }
    out.push({ line: i + 2, body: body.join('\n'), literal: quote !== '' });
    i = j;
  }
  return out;
}

type KindValidator = ((data: unknown) => boolean) & { errors?: unknown };

/**
 * Kinds beyond the project's strict validator (which knows the kinds labvirt
 * itself creates): checked against Kubernetes' schema for required fields,
 * types and enums, and their pod template strictly as a Pod.
 */
const WORKLOADS: Record<string, KindValidator> = {
  'apps/v1/Deployment': deployment,
  'apps/v1/DaemonSet': daemonSet,
  'apps/v1/StatefulSet': statefulSet,
  'batch/v1/Job': job,
};
const OTHERS: Record<string, KindValidator> = {
  'v1/PersistentVolume': persistentVolume,
  'v1/PersistentVolumeClaim': persistentVolumeClaim,
  'storage.k8s.io/v1/StorageClass': storageClass,
};

/**
 * Problems of one object as `kubectl apply` would find them. Returns
 * undefined for a kind no schema here knows (it is left unchecked).
 */
export function manifestProblems(obj: Record<string, unknown>): SchemaProblem[] | undefined {
  const key = `${String(obj.apiVersion)}/${String(obj.kind)}`;
  const own = validateObject(obj);
  if (!own.some((p) => p.path === 'kind' && p.message.startsWith('no schema known'))) return own;
  const validator = WORKLOADS[key] ?? OTHERS[key];
  if (!validator) return undefined;
  const out: SchemaProblem[] = [];
  if (!validator(obj)) {
    for (const e of (validator.errors ?? []) as { instancePath: string; message?: string }[]) {
      out.push({ path: e.instancePath.slice(1).replace(/\//g, '.'), message: e.message ?? '' });
    }
  }
  const template = (obj.spec as { template?: Record<string, unknown> } | undefined)?.template;
  if (WORKLOADS[key] && template && typeof template === 'object') {
    const meta = (template.metadata ?? {}) as Record<string, unknown>;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'template', ...meta },
      spec: template.spec,
    };
    for (const p of validateObject(pod)) {
      out.push({ ...p, path: `spec.template.${p.path}` });
    }
  }
  return out;
}

/**
 * Strict validation of the Kubernetes YAML that scripts feed to kubectl in
 * here-documents with a quoted delimiter (`<<'YAML'`): the body is then
 * exactly what the API server receives. Bodies the shell expands (`<<YAML`
 * with `$` in them) and kinds no schema here knows are skipped, and counted.
 */
export function embeddedManifestProblems(files: readonly LabScriptFile[]): {
  problems: LabProblem[];
  checked: number;
  skipped: number;
} {
  const problems: LabProblem[] = [];
  let checked = 0;
  let skipped = 0;
  for (const file of files) {
    for (const doc of hereDocs(file.content)) {
      if (!/^\s*(apiVersion|kind):/m.test(doc.body)) continue;
      if (!doc.literal && doc.body.includes('$')) {
        skipped++;
        continue;
      }
      const lineCounter = new LineCounter();
      for (const parsed of parseAllDocuments(doc.body, { lineCounter })) {
        const start =
          doc.line + lineCounter.linePos(parsed.contents?.range[0] ?? parsed.range[0]).line - 1;
        const error = parsed.errors[0];
        if (error) {
          const at = doc.line + lineCounter.linePos(error.pos[0]).line - 1;
          problems.push(
            problem(
              `${file.shown}:${at}`,
              '',
              `the YAML fed to kubectl is not valid: ${error.message.split('\n')[0]}`,
              `fix the YAML at line ${at} of ${file.shown}`,
            ),
          );
          break;
        }
        const obj: unknown = parsed.toJS();
        if (!obj || typeof obj !== 'object' || Array.isArray(obj)) continue;
        const found = manifestProblems(obj as Record<string, unknown>);
        if (!found) {
          skipped++;
          continue;
        }
        checked++;
        const o = obj as { kind?: unknown; metadata?: { name?: unknown } };
        const name = `${String(o.kind)} ${String(o.metadata?.name ?? '?')}`;
        for (const p of found) {
          problems.push(
            problem(
              `${file.shown}:${start}`,
              '',
              `${name}: ${p.path || '(root)'}: ${p.message}`,
              `fix the object that starts at line ${start} of ${file.shown}; \`kubectl apply --validate=strict\` would refuse it`,
            ),
          );
        }
      }
    }
  }
  return { problems, checked, skipped };
}
