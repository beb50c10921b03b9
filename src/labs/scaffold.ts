import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { labSchema } from './schema.js';

export interface ScaffoldOptions {
  /** The lab's id, also its folder name and the namespace its objects live in. */
  id: string;
  /** Kubernetes minor version, e.g. "1.31". */
  kubernetes: string;
  nodes: 1 | 3;
  /** The labs folder the lab's folder is created in. */
  labsDir: string;
}

export class ScaffoldError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScaffoldError';
  }
}

/**
 * Writes a small working lab (a Service whose selector misses its pods):
 * lab.yaml with every field commented, real setup/check/solve and a wrong
 * fix, and their sim variants following the sim convention of
 * docs/writing-labs.md. Refuses an existing folder: nothing is overwritten.
 * Returns the files written, relative to the lab folder.
 */
export async function scaffoldLab(options: ScaffoldOptions): Promise<string[]> {
  const { id } = options;
  if (!labSchema.shape.id.safeParse(id).success) {
    throw new ScaffoldError(
      `lab id "${id}" is not a DNS label: use lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters`,
    );
  }
  const dir = join(options.labsDir, id);
  try {
    await mkdir(options.labsDir, { recursive: true });
    await mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ScaffoldError(`${dir} already exists; pick another id or remove that folder`);
    }
    throw err;
  }
  const files = labFiles(options);
  await mkdir(join(dir, 'sim'));
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    await writeFile(path, content, { flag: 'wx' });
    if (name.endsWith('.sh')) await chmod(path, 0o755);
  }
  return Object.keys(files);
}

const REAL_HEADER = `set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf
`;

/**
 * The sim convention: the guest's real paths (a sim guest's / is its own
 * sandbox); a Kubernetes object is the file objects/<namespace>/<kind>/<name> holding
 * one \`field=value\` line per field the lab cares about.
 */
const SIM_HEADER = `set -euo pipefail
objects=/etc/sim/objects
`;

function labFiles(o: ScaffoldOptions): Record<string, string> {
  const ns = o.id;
  const check = (header: string, read: { selector: string; label: string }) => `#!/bin/bash
# Passes when the Service web selects the pods of the Deployment web, which
# keep their label app=web (relabelling them is not the fix).
${header}
label=${read.label}
if [[ "$label" != "web" ]]; then
  echo "FAIL: the pods of the Deployment ${ns}/web are labelled app=\${label:-nothing}; keep app=web and fix the Service instead"
  exit 1
fi
selector=${read.selector}
if [[ "$selector" != "web" ]]; then
  echo "FAIL: the Service ${ns}/web selects app=\${selector:-nothing}, which no pod of the Deployment web has"
  echo "  look at: kubectl -n ${ns} get service web -o yaml; kubectl -n ${ns} get pods --show-labels"
  exit 1
fi
echo "the Service ${ns}/web selects the pods of the Deployment web"
`;
  return {
    'lab.yaml': labYaml(o),
    'setup.sh': `#!/bin/bash
# Breaks the lab: a Deployment web whose pods are labelled app=web, and a
# Service web that selects app=wbe. Safe to run twice (kubectl apply).
${REAL_HEADER}
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata: { name: ${ns} }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: ${ns} }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: nginx:1.27-alpine
          ports: [{ containerPort: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: ${ns} }
spec:
  selector: { app: wbe }
  ports: [{ port: 80, targetPort: 80 }]
YAML
kubectl -n ${ns} rollout status deployment web --timeout=240s
`,
    'check-service-selects-pods.sh': check(REAL_HEADER, {
      label: `$(kubectl -n ${ns} get deployment web -o jsonpath='{.spec.template.metadata.labels.app}' 2>/dev/null || true)`,
      selector: `$(kubectl -n ${ns} get service web -o jsonpath='{.spec.selector.app}' 2>/dev/null || true)`,
    }),
    'solve.sh': `#!/bin/bash
# The reference fix: point the Service at the pods' label.
${REAL_HEADER}
kubectl -n ${ns} patch service web --type=merge -p '{"spec":{"selector":{"app":"web"}}}'
`,
    'wrong-relabel-pods.sh': `#!/bin/bash
# Wrong fix: relabel the pods to match the broken Service instead of fixing it.
${REAL_HEADER}
kubectl -n ${ns} label pods -l app=web app=wbe --overwrite
`,
    'sim/setup.sh': `#!/bin/bash
# Sim: the same two objects as files (see "Sim variants" in docs/writing-labs.md).
${SIM_HEADER}
mkdir -p "$objects/${ns}/deployment" "$objects/${ns}/service"
printf 'label.app=web\\nreplicas=2\\n' >"$objects/${ns}/deployment/web"
printf 'selector.app=wbe\\nport=80\\n' >"$objects/${ns}/service/web"
`,
    'sim/check-service-selects-pods.sh': check(SIM_HEADER, {
      label: `$(sed -n 's/^label.app=//p' "$objects/${ns}/deployment/web" 2>/dev/null || true)`,
      selector: `$(sed -n 's/^selector.app=//p' "$objects/${ns}/service/web" 2>/dev/null || true)`,
    }),
    'sim/solve.sh': `#!/bin/bash
# Sim: the reference fix on the files.
${SIM_HEADER}
sed -i 's/^selector.app=.*/selector.app=web/' "$objects/${ns}/service/web"
`,
    'sim/wrong-relabel-pods.sh': `#!/bin/bash
# Sim wrong fix: relabel the pods instead of fixing the Service.
${SIM_HEADER}
mkdir -p "$objects/${ns}/pod"
printf 'label.app=wbe\\n' >"$objects/${ns}/pod/web-relabelled"
`,
  };
}

function labYaml(o: ScaffoldOptions): string {
  return `# A lab: this folder holds lab.yaml and the bash scripts it names.
# Check it with \`labvirt labs validate\` and test it with
# \`labvirt labs test ${o.id} --sim\`. Every field is described in
# docs/writing-labs.md.

# The folder's name; a DNS label (a-z, 0-9, "-", at most 63 characters).
id: ${o.id}
# One line, shown in lists and at the top of the student's message.
title: The web Service answers nobody
# Markdown shown to the student at start: the task, not the answer.
description: |
  The Service \`web\` in namespace \`${o.id}\` has no endpoints: requests to it
  get no answer, although the pods of the Deployment \`web\` are running.

  Make the Service send traffic to those pods. Do not change the pods.
# easy | medium | hard
difficulty: easy
# Needs the flavor v${o.kubernetes}-${o.nodes}node in the configuration's \`flavors\`.
# Quote the version: YAML reads 1.30 as the number 1.3.
flavor: { kubernetes: '${o.kubernetes}', nodes: ${o.nodes} }
# 5..480, and at most the configuration's sessions.maxMinutes.
timeLimitMinutes: 20
# At least one; revealed one at a time, from gentle to explicit.
hints:
  - 'Compare \`kubectl -n ${o.id} get endpoints web\` with \`kubectl -n ${o.id} get pods --show-labels\`.'
  - "The Service's selector must match the pods' labels exactly."
  - 'Edit the Service: \`kubectl -n ${o.id} edit service web\` and set the selector to app=web.'
# Short words for lists and search.
tags: [services, troubleshooting]
# Breaks the cluster at claim, in order. Each step: node (control-plane,
# worker-1, worker-2, all-workers or all; a 1-node flavor has only
# control-plane), script (relative to this folder), user (root, the
# default, or student) and timeoutSeconds (default 300, at most 3600).
setup:
  - { node: control-plane, script: setup.sh, timeoutSeconds: 300 }
# Optional: runs after setup, before the student is told the env is ready
# (e.g. wait until a node is NotReady).
prepare: []
# Graded by \`check\`: exit 0 = passed; each \`FAIL:\` line is shown to the
# student (indented lines under it continue it). Points give partial credit.
checks:
  - name: service-selects-pods # lowercase, unique in the lab
    description: the Service web selects the pods of the Deployment web
    points: 1 # 1..100
    node: control-plane
    user: root
    script: check-service-selects-pods.sh
    timeoutSeconds: 60 # default 60 for checks
# The reference fix, used by \`labvirt labs test\` (must be safe to run twice).
solve:
  - { node: control-plane, script: solve.sh, timeoutSeconds: 120 }
# Shortcuts the checks must refuse: \`labvirt labs test\` applies each on a
# fresh env after setup and requires some check to still fail.
wrongFixes:
  - name: relabel-pods
    description: relabel the pods to match the Service instead of fixing it
    node: control-plane
    script: wrong-relabel-pods.sh
    timeoutSeconds: 120
# The same lab on the simulated cluster (tests, \`labvirt dev\`,
# \`labvirt labs test --sim\`): the same sections, checks with the same names,
# points, nodes and FAIL: lines, scripts that work on files of the sim
# guest (its own sandboxed /). Never mixed with the real scripts.
sim:
  setup:
    - { node: control-plane, script: sim/setup.sh, timeoutSeconds: 30 }
  checks:
    - name: service-selects-pods
      description: the Service web selects the pods of the Deployment web
      points: 1
      node: control-plane
      script: sim/check-service-selects-pods.sh
      timeoutSeconds: 30
  solve:
    - { node: control-plane, script: sim/solve.sh, timeoutSeconds: 30 }
  wrongFixes:
    - name: relabel-pods
      description: relabel the pods to match the Service instead of fixing it
      node: control-plane
      script: sim/wrong-relabel-pods.sh
      timeoutSeconds: 30
`;
}
