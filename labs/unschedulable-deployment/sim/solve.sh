#!/bin/bash
# Sim: label worker-2, drop its taint, lower the CPU request.
set -euo pipefail
dir="/etc/sim/cluster"

mkdir -p "$dir"
grep -qx 'disktype=ssd' "$dir/worker-2.labels" 2>/dev/null || echo 'disktype=ssd' >>"$dir/worker-2.labels"
: >"$dir/worker-2.taints"
printf 'nodeSelector=disktype=ssd\ncpu=100m\nmemory=64Mi\n' >"$dir/web.spec"
