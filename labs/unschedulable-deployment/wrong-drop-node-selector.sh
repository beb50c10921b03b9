#!/bin/bash
# Wrong fix: drop the nodeSelector (and the oversized request) instead of making worker-2 match.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl -n shop patch deployment web --type=json -p '[
  {"op": "remove", "path": "/spec/template/spec/nodeSelector"},
  {"op": "replace", "path": "/spec/template/spec/containers/0/resources/requests/cpu", "value": "100m"}
]'
kubectl -n shop rollout status deployment web --timeout=120s || true
