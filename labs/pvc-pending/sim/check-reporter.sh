#!/bin/bash
# Sim: the pod "runs" when the claim is bound and the data dir exists.
set -euo pipefail
dir="/etc/sim/storage"

if ! grep -rqx 'storageClassName=fast' "$dir/pv" 2>/dev/null; then
  echo "FAIL: the pod reports/reporter is not Ready (phase Pending)"
  exit 1
fi
if [[ ! -d "/srv/reports" ]]; then
  echo "FAIL: reporter runs, but its data is not in /srv/reports on the node; back the volume with that directory"
  exit 1
fi
echo "reports/reporter is Ready and writes to /srv/reports"
