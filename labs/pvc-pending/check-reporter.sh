#!/bin/bash
# Passes when the reporter pod is Ready and its data landed in /srv/reports.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

ready=$(kubectl -n reports get pod reporter -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
if [[ "$ready" != "True" ]]; then
  phase=$(kubectl -n reports get pod reporter -o jsonpath='{.status.phase}' 2>/dev/null || true)
  echo "FAIL: the pod reports/reporter is not Ready (phase ${phase:-missing})"
  exit 1
fi
if [[ ! -s /srv/reports/report.log ]]; then
  echo "FAIL: reporter runs, but its data is not in /srv/reports on the node; back the volume with that directory"
  exit 1
fi
echo "reports/reporter is Ready and writes to /srv/reports"
