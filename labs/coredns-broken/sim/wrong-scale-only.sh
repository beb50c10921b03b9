#!/bin/bash
# Sim wrong fix: scale CoreDNS up but leave its Corefile serving the wrong domain.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/etc/sim/coredns"
echo 2 >"$root/etc/sim/coredns/replicas"
