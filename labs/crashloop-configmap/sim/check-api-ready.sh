#!/bin/bash
# Sim: the app "starts" when its config file exists.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

if [[ ! -f "$root/etc/sim/billing/api-config/app.conf" ]]; then
  echo "FAIL: billing/api has no ready replica (container is CrashLoopBackOff)"
  exit 1
fi
echo "billing/api is ready"
