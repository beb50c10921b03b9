#!/bin/bash
# Sim wrong fix: start the kubelet without enabling it.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

rm -f "$root/etc/systemd/system/kubelet.service.d/20-local-build.conf"
mkdir -p "$root/run/sim"
printf 'enabled=no\nactive=yes\n' >"$root/run/sim/kubelet.state"
