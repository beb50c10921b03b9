#!/bin/bash
# Sim: put the socket address back.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

sed -i 's#containerd-v2\.sock#containerd.sock#' "$root/etc/containerd/config.toml"
