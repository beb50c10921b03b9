#!/bin/bash
# Waits until the control plane has noticed that worker-1 stopped reporting.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

node=worker-1
for _ in $(seq 1 60); do
  ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
  if [[ "$ready" != "True" ]]; then
    exit 0
  fi
  sleep 3
done
echo "node $node is still Ready 180 s after its kubelet was stopped" >&2
exit 1
