#!/bin/bash
# Sim: rename the key.
set -euo pipefail
dir="/etc/sim/billing/api-config"

mkdir -p "$dir"
echo 'listen=8080' >"$dir/app.conf"
rm -f "$dir/app.cnf"
