#!/bin/bash
# Sim wrong fix: a symlink from the kubelet's endpoint to containerd's socket.
set -euo pipefail
mkdir -p "/run/containerd"
: >"/run/containerd/containerd-v2.sock"
ln -sfn "/run/containerd/containerd-v2.sock" "/run/containerd/containerd.sock"
