#!/bin/bash
# Sim: DNS gets through when some frontend policy allows port 53.
set -euo pipefail
if ! grep -rqx 'egress=53' "/etc/sim/netpol/frontend" 2>/dev/null; then
  echo "FAIL: frontend/client cannot resolve api.backend.svc.cluster.local: its DNS queries do not get through"
  exit 1
fi
echo "frontend/client resolves api.backend"
