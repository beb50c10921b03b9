#!/bin/bash
# Sim: the node is "Ready" when the fake kubelet is active.
set -euo pipefail
if ! grep -qx 'active=yes' "/run/sim/kubelet.state" 2>/dev/null; then
  echo "FAIL: node worker-1 is not Ready: its kubelet is not posting status to the API server"
  exit 1
fi
echo "node worker-1 is Ready"
