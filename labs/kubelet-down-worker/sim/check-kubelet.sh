#!/bin/bash
# Sim: the fake kubelet is enabled and has no foreign drop-in.
set -euo pipefail
failed=0
if ! grep -qx 'enabled=yes' "/run/sim/kubelet.state" 2>/dev/null; then
  echo "FAIL: the kubelet service is not enabled, so it would not start after a reboot"
  failed=1
fi
if [[ -e "/etc/systemd/system/kubelet.service.d/20-local-build.conf" ]]; then
  echo "FAIL: a drop-in still overrides the kubelet's ExecStart (see: systemctl cat kubelet)"
  failed=1
fi
exit "$failed"
