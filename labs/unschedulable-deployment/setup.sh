#!/bin/bash
# Creates shop/web with three reasons not to schedule: a nodeSelector no node
# matches, a taint on the node that should match, and an absurd CPU request.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl label node worker-2 disktype- >/dev/null 2>&1 || true
kubectl taint node worker-2 maintenance=planned:NoSchedule --overwrite
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      nodeSelector:
        disktype: ssd
      containers:
        - name: web
          image: nginx:1.27-alpine
          ports: [{ containerPort: 80 }]
          resources:
            requests: { cpu: "64", memory: 64Mi }
YAML
