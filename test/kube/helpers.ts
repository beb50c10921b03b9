import { loadConfig, type Config } from '../../src/config/index.js';
import {
  KubevirtSchemasMissingError,
  generateEnvSecrets,
  kubevirtSchemasDir,
  kubevirtSchemasPresent,
  renderEnvironment,
  type EnvSecrets,
  type KubeObject,
} from '../../src/kube/index.js';
import { renderUserDataTemplate } from '../../src/sim/guest/index.js';
import { generateKeyPair } from '../../src/ssh/index.js';

export const ORCHESTRATOR_KEY = generateKeyPair().public.trim();

export function configWith(overrides: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, overrides });
}

let secrets: Promise<EnvSecrets> | undefined;
/** One CA for the whole file: RSA key generation is the slow part. */
export function sharedSecrets(): Promise<EnvSecrets> {
  secrets ??= generateEnvSecrets();
  return secrets;
}

export async function renderWith(
  flavor: string,
  overrides: Record<string, unknown> = {},
  envId = 'abcd1234',
): Promise<KubeObject[]> {
  return renderEnvironment({
    config: configWith(overrides),
    flavor,
    envId,
    secrets: await sharedSecrets(),
  });
}

/** Title suffix that says why a schema-dependent suite is skipped. */
export const SCHEMAS_PRESENT = kubevirtSchemasPresent();
export const SCHEMAS_SKIP_REASON = SCHEMAS_PRESENT
  ? ''
  : ` (skipped: ${new KubevirtSchemasMissingError(kubevirtSchemasDir()).message})`;

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are inspected field by field */
export function byKind(objects: KubeObject[], kind: string): any[] {
  return objects.filter((o) => o.kind === kind);
}

export function named(objects: KubeObject[], kind: string, name: string): any {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found)
    throw new Error(
      `no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata?.name}`).join(', ')}`,
    );
  return found;
}

/** The env's one user data template (the `cloudinit` Secret's `userdata`), as stored. */
export function envUserDataOf(objects: KubeObject[]): string {
  const secret = named(objects, 'Secret', 'cloudinit');
  return Buffer.from(secret.data.userdata as string, 'base64').toString('utf8');
}

/** What cloud-init on `node` makes of the env's user data (rendered for its hostname, as the simulator does). */
export function userDataOf(objects: KubeObject[], node: string): string {
  return renderUserDataTemplate(envUserDataOf(objects), {
    localHostname: node,
    instanceId: `${node}.test`,
  });
}
