#!/bin/bash
# Sim: remove the drop-in and mark the fake kubelet enabled and active.
set -euo pipefail
rm -f "/etc/systemd/system/kubelet.service.d/20-local-build.conf"
mkdir -p "/run/sim"
printf 'enabled=yes\nactive=yes\n' >"/run/sim/kubelet.state"
