#!/bin/bash
# Sim: the node is "Ready" when the runtime is reachable.
set -euo pipefail
if ! grep -qF 'address = "/run/containerd/containerd.sock"' "/etc/containerd/config.toml" 2>/dev/null; then
  echo "FAIL: node worker-2 is not Ready: container runtime network not ready: runtime is down"
  exit 1
fi
echo "node worker-2 is Ready"
