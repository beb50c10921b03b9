#!/bin/bash
# Puts containerd's socket back and restarts the runtime and the kubelet.
set -euo pipefail

sed -i 's#address = "/run/containerd/containerd-v2.sock"#address = "/run/containerd/containerd.sock"#' \
  /etc/containerd/config.toml
systemctl restart containerd
systemctl restart kubelet
