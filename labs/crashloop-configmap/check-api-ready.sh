#!/bin/bash
# Passes when billing/api has a ready replica.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

if ! kubectl -n billing get deployment api >/dev/null 2>&1; then
  echo "FAIL: the Deployment billing/api does not exist any more; it must be fixed, not deleted"
  exit 1
fi
ready=$(kubectl -n billing get deployment api -o jsonpath='{.status.readyReplicas}')
if [[ "${ready:-0}" -lt 1 ]]; then
  reason=$(kubectl -n billing get pods -l app=api -o jsonpath='{.items[0].status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
  echo "FAIL: billing/api has no ready replica${reason:+ (container is $reason)}"
  exit 1
fi
echo "billing/api is ready"
