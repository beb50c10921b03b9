#!/bin/bash
# Sim: the app "starts" when its config file exists.
set -euo pipefail
if [[ ! -f "/etc/sim/billing/api-config/app.conf" ]]; then
  echo "FAIL: billing/api has no ready replica (container is CrashLoopBackOff)"
  exit 1
fi
echo "billing/api is ready"
