import type { KubeObject } from './client.js';

interface RuleWithPeers {
  from?: unknown;
  _from?: unknown;
  [k: string]: unknown;
}

/**
 * client-node serializes a typed kind through its generated model, whose
 * NetworkPolicy ingress rule names `from` as `_from` (a reserved word in its
 * generator): a plain manifest's `from` would be dropped on the way out,
 * silently turning "from these peers" into "from anywhere". This gives the
 * model the field under the name it reads; the wire format is unchanged.
 */
export function toClientModel(obj: KubeObject): KubeObject {
  if (obj.kind !== 'NetworkPolicy' || !obj.apiVersion?.startsWith('networking.k8s.io/')) return obj;
  const spec = obj.spec as { ingress?: RuleWithPeers[] } | undefined;
  if (!spec?.ingress?.some((r) => 'from' in r)) return obj;
  return {
    ...obj,
    spec: {
      ...spec,
      ingress: spec.ingress.map(({ from, ...rest }) =>
        from === undefined ? rest : { ...rest, _from: from },
      ),
    },
  };
}
