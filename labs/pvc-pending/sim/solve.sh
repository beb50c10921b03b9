#!/bin/bash
# Sim: create the fake PV and its host directory.
set -euo pipefail
dir="/etc/sim/storage"

mkdir -p "$dir/pv" "/srv/reports"
printf 'storageClassName=fast\nstorage=1Gi\naccessMode=ReadWriteOnce\nhostPath=/srv/reports\n' >"$dir/pv/reports-pv"
