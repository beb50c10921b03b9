#!/bin/bash
# Sim: the same shape on files — a foreign kubelet drop-in and a unit state
# file that says "disabled, inactive".
set -euo pipefail
mkdir -p "/etc/systemd/system/kubelet.service.d" "/run/sim"
cat >"/etc/systemd/system/kubelet.service.d/20-local-build.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/opt/kubelet/bin/kubelet
UNIT
printf 'enabled=no\nactive=no\n' >"/run/sim/kubelet.state"
