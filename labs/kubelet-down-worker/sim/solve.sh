#!/bin/bash
# Sim: remove the drop-in and mark the fake kubelet enabled and active.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

rm -f "$root/etc/systemd/system/kubelet.service.d/20-local-build.conf"
mkdir -p "$root/run/sim"
printf 'enabled=yes\nactive=yes\n' >"$root/run/sim/kubelet.state"
