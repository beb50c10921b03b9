#!/bin/bash
# Sim: web is "ready" when worker-2 matches and the requests fit.
set -euo pipefail
dir="/etc/sim/cluster"

reasons=()
grep -qx 'disktype=ssd' "$dir/worker-2.labels" 2>/dev/null || reasons+=("no node matches the nodeSelector")
if grep -q 'NoSchedule' "$dir/worker-2.taints" 2>/dev/null; then reasons+=("worker-2 has an untolerated taint"); fi
grep -qx 'cpu=100m' "$dir/web.spec" 2>/dev/null || reasons+=("no node has enough free CPU")
if [[ ${#reasons[@]} -gt 0 ]]; then
  echo "FAIL: shop/web has 0 of 3 replicas ready (3 pod(s) Pending: ${reasons[*]})"
  exit 1
fi
echo "shop/web has 3 ready replicas"
