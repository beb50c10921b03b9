#!/bin/bash
# Sim: containerd "listens" where its fake config says.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

if ! grep -qF 'address = "/run/containerd/containerd.sock"' "$root/etc/containerd/config.toml" 2>/dev/null; then
  echo "FAIL: nothing answers on /run/containerd/containerd.sock, the kubelet's container runtime endpoint"
  exit 1
fi
echo "containerd answers on /run/containerd/containerd.sock"
