#!/bin/bash
# Puts the configuration under the key the app reads and restarts the app.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

# apply drops app.cnf: it was set by the previous apply and is absent now.
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
  namespace: billing
data:
  app.conf: |
    listen=8080
YAML
kubectl -n billing rollout restart deployment api
kubectl -n billing rollout status deployment api --timeout=240s
