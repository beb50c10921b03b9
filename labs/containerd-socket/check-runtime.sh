#!/bin/bash
# Passes when containerd answers on the socket the kubelet uses.
set -euo pipefail

sock=/run/containerd/containerd.sock
if ! systemctl is-active --quiet containerd; then
  echo "FAIL: the containerd service is not running on $(hostname)"
  exit 1
fi
if [[ -L "$sock" ]]; then
  echo "FAIL: $sock is a symlink that vanishes when /run is emptied at the next reboot; make containerd itself listen there"
  exit 1
fi
if ! crictl --runtime-endpoint "unix://$sock" --timeout 5s version >/dev/null 2>&1; then
  echo "FAIL: nothing answers on $sock, the kubelet's container runtime endpoint"
  exit 1
fi
echo "containerd answers on $sock"
