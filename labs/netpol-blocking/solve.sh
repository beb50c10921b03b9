#!/bin/bash
# Lets frontend resolve names and call the api on port 80, and fixes the
# ingress rule's label and port.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: allow-frontend, namespace: backend }
spec:
  podSelector: { matchLabels: { app: api } }
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: frontend } }
          podSelector: { matchLabels: { role: frontend } }
      ports: [{ protocol: TCP, port: 80 }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: allow-dns-and-api, namespace: frontend }
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: kube-system } }
      ports: [{ protocol: UDP, port: 53 }, { protocol: TCP, port: 53 }]
    - to:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: backend } }
      ports: [{ protocol: TCP, port: 80 }]
YAML
# Policies take a moment to reach every node.
for _ in $(seq 1 30); do
  if kubectl -n frontend exec client -- wget -qO- -T 3 http://api.backend.svc.cluster.local >/dev/null 2>&1; then
    exit 0
  fi
  sleep 2
done
echo "frontend/client still cannot reach the api after the fix" >&2
exit 1
