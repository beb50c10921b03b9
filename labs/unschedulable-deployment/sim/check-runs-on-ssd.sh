#!/bin/bash
# Sim: the nodeSelector is kept and worker-2 is the SSD node.
set -euo pipefail
dir="/etc/sim/cluster"

if ! grep -qx 'nodeSelector=disktype=ssd' "$dir/web.spec" 2>/dev/null; then
  echo "FAIL: shop/web no longer has the nodeSelector disktype=ssd; keep it and make worker-2 match instead"
  exit 1
fi
if ! grep -qx 'disktype=ssd' "$dir/worker-2.labels" 2>/dev/null; then
  echo "FAIL: no pod of shop/web is running yet"
  exit 1
fi
echo "every running pod of shop/web is on worker-2"
