#!/bin/bash
# Passes when worker-2 reports Ready.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

node=worker-2
ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
if [[ "$ready" != "True" ]]; then
  why=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' 2>/dev/null || true)
  echo "FAIL: node $node is not Ready${why:+: $why}"
  exit 1
fi
echo "node $node is Ready"
