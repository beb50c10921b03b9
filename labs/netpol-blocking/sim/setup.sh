#!/bin/bash
# Sim: fake policies as key=value files with the same three mistakes.
set -euo pipefail
dir="/etc/sim/netpol"

mkdir -p "$dir/backend" "$dir/frontend"
echo 'deny=ingress' >"$dir/backend/default-deny-ingress"
printf 'from=role=frontent\nport=8080\n' >"$dir/backend/allow-frontend"
echo 'deny=egress' >"$dir/frontend/default-deny-egress"
rm -f "$dir/frontend/allow-dns-and-api"
mkdir -p "/etc/sim/objects/other/pod"
printf 'label.role=frontend\nstatus.phase=Running\n' >"/etc/sim/objects/other/pod/intruder"
