#!/bin/bash
# Sim: a fake claim asking for class "fast" and no volumes.
set -euo pipefail
dir="/etc/sim/storage"

mkdir -p "$dir/pv"
printf 'storageClassName=fast\nstorage=1Gi\naccessMode=ReadWriteOnce\n' >"$dir/report-data.pvc"
