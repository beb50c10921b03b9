#!/bin/bash
# Sim: a fake ConfigMap folder (one file per key) with the wrong key.
set -euo pipefail
dir="/etc/sim/billing/api-config"

mkdir -p "$dir"
rm -f "$dir/app.conf"
echo 'listen=8080' >"$dir/app.cnf"
echo busybox:1.36 >"/etc/sim/billing/api.image"
