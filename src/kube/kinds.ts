import { validate as deployment } from 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment';
import { validate as statefulSet } from 'kubernetes-models/_schemas/IoK8sApiAppsV1StatefulSet';
import { validate as configMap } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ConfigMap';
import { validate as endpoints } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Endpoints';
import { validate as coreEvent } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Event';
import { validate as limitRange } from 'kubernetes-models/_schemas/IoK8sApiCoreV1LimitRange';
import { validate as namespace } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Namespace';
import { validate as node } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Node';
import { validate as pod } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Pod';
import { validate as resourceQuota } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ResourceQuota';
import { validate as secret } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Secret';
import { validate as service } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Service';
import { validate as serviceAccount } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ServiceAccount';
import { validate as eventsEvent } from 'kubernetes-models/_schemas/IoK8sApiEventsV1Event';
import { validate as networkPolicy } from 'kubernetes-models/_schemas/IoK8sApiNetworkingV1NetworkPolicy';
import { validate as podDisruptionBudget } from 'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget';
import { validate as validatingAdmissionPolicy } from 'kubernetes-models/_schemas/IoK8sApiAdmissionregistrationV1ValidatingAdmissionPolicy';
import { validate as validatingAdmissionPolicyBinding } from 'kubernetes-models/_schemas/IoK8sApiAdmissionregistrationV1ValidatingAdmissionPolicyBinding';
import { validate as clusterRole } from 'kubernetes-models/_schemas/IoK8sApiRbacV1ClusterRole';
import { validate as clusterRoleBinding } from 'kubernetes-models/_schemas/IoK8sApiRbacV1ClusterRoleBinding';
import { validate as role } from 'kubernetes-models/_schemas/IoK8sApiRbacV1Role';
import { validate as roleBinding } from 'kubernetes-models/_schemas/IoK8sApiRbacV1RoleBinding';

/** A compiled kubernetes-models validator (Ajv standalone code: errors on `.errors`). */
export type CompiledValidator = ((data: unknown) => boolean) & { errors?: unknown };

export interface BuiltinKind {
  /** @kubernetes/client-node model, source of the strict structural schema. */
  model: string;
  /** kubernetes-models validator: required fields, enums, formats. */
  validate: CompiledValidator;
}

/**
 * The built-in kinds labvirt (and the simulator) handle, by `apiVersion/kind`,
 * and those of labvirt's own install (the Helm chart under deploy/).
 */
export const BUILTIN_KINDS: Record<string, BuiltinKind> = {
  'v1/Namespace': { model: 'V1Namespace', validate: namespace },
  'v1/Node': { model: 'V1Node', validate: node },
  'v1/Secret': { model: 'V1Secret', validate: secret },
  'v1/ConfigMap': { model: 'V1ConfigMap', validate: configMap },
  'v1/Service': { model: 'V1Service', validate: service },
  'v1/Endpoints': { model: 'V1Endpoints', validate: endpoints },
  'v1/Pod': { model: 'V1Pod', validate: pod },
  'v1/Event': { model: 'CoreV1Event', validate: coreEvent },
  'v1/ResourceQuota': { model: 'V1ResourceQuota', validate: resourceQuota },
  'v1/LimitRange': { model: 'V1LimitRange', validate: limitRange },
  'v1/ServiceAccount': { model: 'V1ServiceAccount', validate: serviceAccount },
  'networking.k8s.io/v1/NetworkPolicy': { model: 'V1NetworkPolicy', validate: networkPolicy },
  'events.k8s.io/v1/Event': { model: 'EventsV1Event', validate: eventsEvent },
  'rbac.authorization.k8s.io/v1/Role': { model: 'V1Role', validate: role },
  'rbac.authorization.k8s.io/v1/ClusterRole': { model: 'V1ClusterRole', validate: clusterRole },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: 'V1RoleBinding', validate: roleBinding },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    model: 'V1ClusterRoleBinding',
    validate: clusterRoleBinding,
  },
  // labvirt's own install (deploy/helm/labvirt).
  'apps/v1/Deployment': { model: 'V1Deployment', validate: deployment },
  'apps/v1/StatefulSet': { model: 'V1StatefulSet', validate: statefulSet },
  'policy/v1/PodDisruptionBudget': {
    model: 'V1PodDisruptionBudget',
    validate: podDisruptionBudget,
  },
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy': {
    model: 'V1ValidatingAdmissionPolicy',
    validate: validatingAdmissionPolicy,
  },
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding': {
    model: 'V1ValidatingAdmissionPolicyBinding',
    validate: validatingAdmissionPolicyBinding,
  },
};
