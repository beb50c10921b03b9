#!/bin/bash
# Sim: the same shape on files — a foreign kubelet drop-in and a unit state
# file that says "disabled, inactive".
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/etc/systemd/system/kubelet.service.d" "$root/run/sim"
cat >"$root/etc/systemd/system/kubelet.service.d/20-local-build.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/opt/kubelet/bin/kubelet
UNIT
printf 'enabled=no\nactive=no\n' >"$root/run/sim/kubelet.state"
