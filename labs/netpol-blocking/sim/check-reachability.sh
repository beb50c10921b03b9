#!/bin/bash
# Sim: the client reaches the api when both ends allow port 80 for frontend.
set -euo pipefail
dir="/etc/sim/netpol"

if [[ ! -f "$dir/backend/default-deny-ingress" || ! -f "$dir/frontend/default-deny-egress" ]]; then
  echo "FAIL: a default-deny NetworkPolicy was deleted; keep the default-deny policies and add what is missing"
  exit 1
fi
if ! grep -qxE 'from=(role=frontend|any)' "$dir/backend/allow-frontend" 2>/dev/null ||
  ! grep -qx 'port=80' "$dir/backend/allow-frontend" ||
  ! grep -rqx 'egress=80' "$dir/frontend"; then
  echo "FAIL: frontend/client gets no answer from http://api.backend (port 80)"
  exit 1
fi
if ! grep -qx 'status.phase=Running' "/etc/sim/objects/other/pod/intruder" 2>/dev/null; then
  echo "FAIL: other/intruder is gone; keep it running: it shows that other namespaces stay blocked"
  exit 1
fi
if grep -qx 'from=any' "$dir/backend/allow-frontend"; then
  echo "FAIL: other/intruder can reach the api too; only pods in namespace frontend may"
  exit 1
fi
echo "only frontend reaches api.backend"
