#!/bin/bash
# Deploys backend/api, a client in frontend and an intruder in other, plus
# policies that deny too much: frontend's egress default-deny also blocks
# DNS, and backend's allow rule selects a mistyped label on the wrong port.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata: { name: backend }
---
apiVersion: v1
kind: Namespace
metadata: { name: frontend }
---
apiVersion: v1
kind: Namespace
metadata: { name: other }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: backend }
spec:
  replicas: 1
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      containers:
        - name: api
          image: nginx:1.27-alpine
          ports: [{ containerPort: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: backend }
spec:
  selector: { app: api }
  ports: [{ port: 80, targetPort: 80 }]
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: frontend, labels: { role: frontend } }
spec:
  containers:
    - { name: client, image: busybox:1.36, command: ["sleep", "1000000"] }
---
apiVersion: v1
kind: Pod
metadata: { name: intruder, namespace: other, labels: { role: frontend } }
spec:
  containers:
    - { name: intruder, image: busybox:1.36, command: ["sleep", "1000000"] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: default-deny-ingress, namespace: backend }
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: allow-frontend, namespace: backend }
spec:
  podSelector: { matchLabels: { app: api } }
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: frontend } }
          podSelector: { matchLabels: { role: frontent } }
      ports: [{ protocol: TCP, port: 8080 }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: default-deny-egress, namespace: frontend }
spec:
  podSelector: {}
  policyTypes: [Egress]
YAML
