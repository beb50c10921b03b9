#!/bin/bash
# Passes when worker-1 reports Ready.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

node=worker-1
ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
if [[ "$ready" != "True" ]]; then
  echo "FAIL: node $node is not Ready (Ready=${ready:-unknown}): its kubelet is not posting status to the API server"
  exit 1
fi
echo "node $node is Ready"
