import { evaluate } from '@marcbachmann/cel-js';

/**
 * ValidatingAdmissionPolicies as kube-apiserver applies them, for the parts
 * labvirt's policies use: `matchConstraints.resourceRules` (group, version,
 * resource, operation), every `matchConditions` expression true, then each
 * validation's CEL expression evaluated with `request`, `object`,
 * `oldObject` and `namespaceObject` (CEL by @marcbachmann/cel-js). A policy
 * counts only when a ValidatingAdmissionPolicyBinding with `Deny` names it.
 */
export interface AdmissionRequest {
  operation: 'CREATE' | 'UPDATE' | 'DELETE';
  username: string;
  group: string;
  version: string;
  resource: string;
  /** The new object (null for DELETE). */
  object: Record<string, unknown> | null;
  /** The object before (null for CREATE). */
  oldObject: Record<string, unknown> | null;
  /** The Namespace of a namespaced object (null for cluster-scoped ones). */
  namespaceObject: Record<string, unknown> | null;
}

interface ResourceRule {
  apiGroups?: string[];
  apiVersions?: string[];
  operations?: string[];
  resources?: string[];
}
interface Policy {
  kind: string;
  metadata: { name: string };
  spec: {
    matchConstraints?: { resourceRules?: ResourceRule[] };
    matchConditions?: { name: string; expression: string }[];
    validations?: { expression: string; message?: string }[];
    policyName?: string;
    validationActions?: string[];
  };
}

const anyOf = (list: string[] | undefined, value: string) =>
  (list ?? []).some((x) => x === '*' || x === value);

/** The messages of every validation that refuses the request (empty: admitted). */
export function refusals(objects: unknown[], req: AdmissionRequest): string[] {
  const all = objects as Policy[];
  const denying = new Set(
    all
      .filter(
        (o) =>
          o.kind === 'ValidatingAdmissionPolicyBinding' &&
          o.spec.validationActions?.includes('Deny'),
      )
      .map((b) => b.spec.policyName),
  );
  const context = {
    request: {
      operation: req.operation,
      userInfo: { username: req.username },
      resource: { group: req.group, version: req.version, resource: req.resource },
    },
    object: req.object,
    oldObject: req.oldObject,
    namespaceObject: req.namespaceObject,
  };
  const out: string[] = [];
  for (const p of all) {
    if (p.kind !== 'ValidatingAdmissionPolicy' || !denying.has(p.metadata.name)) continue;
    const matches = (p.spec.matchConstraints?.resourceRules ?? []).some(
      (r) =>
        anyOf(r.apiGroups, req.group) &&
        anyOf(r.apiVersions, req.version) &&
        anyOf(r.resources, req.resource) &&
        anyOf(r.operations, req.operation),
    );
    if (!matches) continue;
    if (!(p.spec.matchConditions ?? []).every((c) => evaluate(c.expression, context) === true))
      continue;
    for (const v of p.spec.validations ?? [])
      if (evaluate(v.expression, context) !== true)
        out.push(v.message ?? `failed expression: ${v.expression}`);
  }
  return out;
}
