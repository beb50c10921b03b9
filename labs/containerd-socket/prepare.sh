#!/bin/bash
# Waits until the control plane reports worker-2 NotReady.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

node=worker-2
for _ in $(seq 1 60); do
  ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
  if [[ "$ready" != "True" ]]; then
    exit 0
  fi
  sleep 3
done
echo "node $node is still Ready 180 s after containerd moved its socket" >&2
exit 1
