export {
  ANNOTATIONS,
  CONTROL_PLANE_NAME,
  ENV_ID_PATTERN,
  ENV_PKI_SECRET,
  LABELS,
  MANAGED_BY,
  SSH_NODEPORT_SERVICE,
  ENV_CLOUDINIT_SECRET,
  envNamespace,
  newEnvId,
  nodeNames,
  roleOf,
  type EnvState,
  type NodeName,
  type NodeRole,
} from './names.js';
export {
  EnvIdentities,
  EnvIdentityMissingError,
  envSecretsData,
  generateEnvSecrets,
  readEnvSecrets,
  syncClientCertificate,
  validFor,
  type EnvSecrets,
  type EnvSshIdentityView,
  type SshKeyPair,
} from './secrets.js';
export {
  ENV_ROLE_BINDING,
  POD_SECURITY_LABELS,
  renderEnvironment,
  subjectOfUser,
  type EnvOwner,
  type RbacSubject,
  type RenderInput,
} from './render.js';
export {
  renderUserData,
  renderEnvUserData,
  CLUSTER_ENV_PATH,
  IMAGES_LOCK_PATH,
  type UserDataInput,
} from './cloudinit.js';
export { renderVirtualMachine, type VmInput } from './vm.js';
export { envResources, launcherMemoryMi, type EnvResources } from './isolation.js';
export {
  cloudInitDir,
  imageLockOf,
  imageLockPath,
  imagePinning,
  inventoryDirs,
  unpinnedImagesNotice,
  vmTemplatesDir,
  type ImagePinning,
} from './templates.js';
export { parseQuantity } from './quantity.js';
export {
  SchemaValidationError,
  assertValid,
  validateObject,
  type SchemaProblem,
} from './validate.js';
export {
  KUBEVIRT_SCHEMA_FILES,
  KubevirtSchemasMissingError,
  kubevirtSchemasDir,
  kubevirtSchemasPresent,
} from './schema-crd.js';
// The schemas behind validation, for the simulator's OpenAPI documents.
export { BUILTIN_KINDS } from './kinds.js';
export { k8sDefinitions, type JsonSchema } from './schema-k8s.js';
export {
  cidrContains,
  evaluateNetworkPolicies,
  isPodEndpoint,
  selectorMatches,
  type Connection,
  type Endpoint,
  type ExternalEndpoint,
  type LabelSelector,
  type NetworkPolicyLike,
  type PodEndpoint,
  type PolicyDecision,
  type Protocol,
} from './netpol.js';
export {
  HostCluster,
  loadKubeConfig,
  KeepAliveKubeConfig,
  IDLE_CONNECTION_MS,
  MAX_CALL_CONNECTIONS,
  isApiError,
  isQuotaExceeded,
  apiErrorMessage,
  type KubeObject,
  type NamespaceView,
  type VmiStatusView,
} from './client.js';
export type { TransientRetry } from './transient.js';
export {
  KubeApiReachability,
  isApiUnavailable,
  outlastOutage,
  type OutlastOptions,
} from './reachability.js';
export { SharedWatch, type SharedWatchOptions, type WatchedObject } from './watch.js';
export {
  DEFAULT_ENV_CLUSTER_ROLE,
  DOCTOR_PERMISSIONS,
  DOCTOR_IMAGE_PERMISSIONS,
  ENV_ROLE,
  KIND_RESOURCES,
  LABVIRT_PERMISSIONS,
  permissionKey,
  rulesOf,
  type ApiPermission,
  type PermissionScope,
} from './permissions.js';
export { ClusterInspector, type KubeVirtInstall, type ServerVersion } from './inspect.js';
export {
  NamespaceEventRecorder,
  type NamespaceEvent,
  type NamespaceEventRecorderOptions,
} from './events.js';
