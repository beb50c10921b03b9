#!/bin/bash
# Passes when shop/web has 3 ready replicas.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

if ! kubectl -n shop get deployment web >/dev/null 2>&1; then
  echo "FAIL: the Deployment shop/web does not exist any more; it must be fixed, not deleted"
  exit 1
fi
ready=$(kubectl -n shop get deployment web -o jsonpath='{.status.readyReplicas}')
if [[ "${ready:-0}" -lt 3 ]]; then
  pending=$(kubectl -n shop get pods -l app=web --field-selector=status.phase=Pending -o name | wc -l)
  echo "FAIL: shop/web has ${ready:-0} of 3 replicas ready ($pending pod(s) Pending)"
  exit 1
fi
echo "shop/web has $ready ready replicas"
