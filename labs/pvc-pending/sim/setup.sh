#!/bin/bash
# Sim: a fake claim asking for class "fast" and no volumes.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"
dir="$root/etc/sim/storage"

mkdir -p "$dir/pv"
printf 'storageClassName=fast\nstorage=1Gi\naccessMode=ReadWriteOnce\n' >"$dir/report-data.pvc"
