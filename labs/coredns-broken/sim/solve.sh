#!/bin/bash
# Sim: fix the zone and scale back up.
set -euo pipefail
dir="/etc/sim/coredns"

mkdir -p "$dir"
if [[ -f "$dir/Corefile" ]]; then
  sed -i 's/kubernetes cluster\.locl /kubernetes cluster.local /' "$dir/Corefile"
fi
echo 2 >"$dir/replicas"
