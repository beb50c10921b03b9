#!/bin/bash
# Sim: fix the ingress rule and allow DNS and the api from frontend.
set -euo pipefail
dir="/etc/sim/netpol"

mkdir -p "$dir/backend" "$dir/frontend"
printf 'from=role=frontend\nport=80\n' >"$dir/backend/allow-frontend"
printf 'egress=53\negress=80\n' >"$dir/frontend/allow-dns-and-api"
