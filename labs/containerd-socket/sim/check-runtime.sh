#!/bin/bash
# Sim: containerd "listens" where its fake config says.
set -euo pipefail
if [[ -L "/run/containerd/containerd.sock" ]]; then
  echo "FAIL: /run/containerd/containerd.sock is a symlink that vanishes when /run is emptied at the next reboot; make containerd itself listen there"
  exit 1
fi

if ! grep -qF 'address = "/run/containerd/containerd.sock"' "/etc/containerd/config.toml" 2>/dev/null; then
  echo "FAIL: nothing answers on /run/containerd/containerd.sock, the kubelet's container runtime endpoint"
  exit 1
fi
echo "containerd answers on /run/containerd/containerd.sock"
