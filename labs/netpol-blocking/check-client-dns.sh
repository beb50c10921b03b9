#!/bin/bash
# Passes when frontend/client can resolve the api Service by name.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

if ! kubectl -n frontend exec client -- nslookup api.backend.svc.cluster.local >/dev/null 2>&1; then
  echo "FAIL: frontend/client cannot resolve api.backend.svc.cluster.local: its DNS queries do not get through"
  exit 1
fi
echo "frontend/client resolves api.backend"
