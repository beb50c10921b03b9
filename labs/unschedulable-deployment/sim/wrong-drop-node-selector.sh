#!/bin/bash
# Sim wrong fix: drop the nodeSelector (and the oversized request) instead of making worker-2 match.
set -euo pipefail
dir="/etc/sim/cluster"
mkdir -p "$dir"
printf 'cpu=100m\nmemory=64Mi\n' >"$dir/web.spec"
