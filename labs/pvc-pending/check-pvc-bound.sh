#!/bin/bash
# Passes when reports/report-data is Bound.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

phase=$(kubectl -n reports get pvc report-data -o jsonpath='{.status.phase}' 2>/dev/null || true)
if [[ -z "$phase" ]]; then
  echo "FAIL: the claim reports/report-data does not exist any more; it must be kept, not recreated"
  exit 1
fi
if [[ "$phase" != "Bound" ]]; then
  echo "FAIL: the claim reports/report-data is $phase: no PersistentVolume matches its class, size and access mode"
  exit 1
fi
echo "reports/report-data is Bound to $(kubectl -n reports get pvc report-data -o jsonpath='{.spec.volumeName}')"
