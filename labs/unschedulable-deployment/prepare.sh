#!/bin/bash
# Waits until the scheduler has refused the pods, so `describe` shows why.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

for _ in $(seq 1 40); do
  if kubectl -n shop get pods -l app=web \
    -o jsonpath='{.items[*].status.conditions[?(@.type=="PodScheduled")].reason}' | grep -q Unschedulable; then
    exit 0
  fi
  sleep 2
done
echo "shop/web pods were not reported Unschedulable within 80 s" >&2
exit 1
