#!/bin/bash
# Sim wrong fix: open the api to every namespace and delete the intruder.
set -euo pipefail
dir="/etc/sim/netpol"

mkdir -p "$dir/backend" "$dir/frontend"
printf 'from=any\nport=80\n' >"$dir/backend/allow-frontend"
printf 'egress=53\negress=80\n' >"$dir/frontend/allow-dns-and-api"
rm -f "/etc/sim/objects/other/pod/intruder"
