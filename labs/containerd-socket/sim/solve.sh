#!/bin/bash
# Sim: put the socket address back.
set -euo pipefail
sed -i 's#containerd-v2\.sock#containerd.sock#' "/etc/containerd/config.toml"
