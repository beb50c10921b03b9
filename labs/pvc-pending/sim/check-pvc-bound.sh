#!/bin/bash
# Sim: the claim is "Bound" when a fake PV of class fast exists.
set -euo pipefail
dir="/etc/sim/storage"

if ! grep -rqx 'storageClassName=fast' "$dir/pv" 2>/dev/null; then
  echo "FAIL: the claim reports/report-data is Pending: no PersistentVolume matches its class, size and access mode"
  exit 1
fi
echo "reports/report-data is Bound"
