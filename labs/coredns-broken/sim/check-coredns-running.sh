#!/bin/bash
# Sim: CoreDNS "runs" when the fake replica count is above zero.
set -euo pipefail
replicas=$(cat "/etc/sim/coredns/replicas" 2>/dev/null || echo 0)
if [[ "$replicas" -lt 1 ]]; then
  echo "FAIL: the CoreDNS Deployment (kube-system/coredns) has no ready pods (0 ready of $replicas wanted)"
  exit 1
fi
echo "CoreDNS has $replicas ready pod(s)"
