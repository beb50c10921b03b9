#!/bin/bash
# Sim: names "resolve" when CoreDNS runs and serves the cluster.local zone.
set -euo pipefail
dir="/etc/sim/coredns"

replicas=$(cat "$dir/replicas" 2>/dev/null || echo 0)
if [[ "$replicas" -lt 1 ]] || ! grep -q 'kubernetes cluster.local ' "$dir/Corefile" 2>/dev/null; then
  echo "FAIL: kubernetes.default.svc.cluster.local does not resolve through the kube-dns Service (got 'no answer')"
  exit 1
fi
echo "kubernetes.default.svc.cluster.local resolves"
