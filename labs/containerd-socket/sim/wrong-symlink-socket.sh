#!/bin/bash
# Sim wrong fix: a symlink from the kubelet's endpoint to containerd's socket.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/run/containerd"
: >"$root/run/containerd/containerd-v2.sock"
ln -sfn "$root/run/containerd/containerd-v2.sock" "$root/run/containerd/containerd.sock"
