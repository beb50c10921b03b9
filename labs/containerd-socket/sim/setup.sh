#!/bin/bash
# Sim: a fake containerd config whose gRPC address moved.
set -euo pipefail
mkdir -p "/etc/containerd"
cat >"/etc/containerd/config.toml" <<'TOML'
version = 2

[grpc]
  address = "/run/containerd/containerd-v2.sock"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
TOML
