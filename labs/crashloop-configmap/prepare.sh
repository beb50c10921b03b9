#!/bin/bash
# Waits until the api container has failed at least once.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

for _ in $(seq 1 60); do
  restarts=$(kubectl -n billing get pods -l app=api -o jsonpath='{.items[*].status.containerStatuses[0].restartCount}')
  if [[ -n "$restarts" && "${restarts%% *}" -ge 1 ]]; then
    exit 0
  fi
  sleep 2
done
echo "billing/api did not crash within 120 s" >&2
exit 1
