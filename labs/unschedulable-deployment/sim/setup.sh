#!/bin/bash
# Sim: fake node labels/taints and a fake Deployment spec.
set -euo pipefail
dir="/etc/sim/cluster"

mkdir -p "$dir"
echo 'kubernetes.io/hostname=worker-2' >"$dir/worker-2.labels"
echo 'maintenance=planned:NoSchedule' >"$dir/worker-2.taints"
printf 'nodeSelector=disktype=ssd\ncpu=64\nmemory=64Mi\n' >"$dir/web.spec"
