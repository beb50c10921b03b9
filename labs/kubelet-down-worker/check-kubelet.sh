#!/bin/bash
# Passes when the kubelet runs now, starts at boot, and has no foreign drop-in.
set -euo pipefail

failed=0
if [[ "$(systemctl is-active kubelet || true)" != "active" ]]; then
  echo "FAIL: the kubelet service is not running on $(hostname)"
  failed=1
fi
if [[ "$(systemctl is-enabled kubelet 2>/dev/null || true)" != "enabled" ]]; then
  echo "FAIL: the kubelet service is not enabled, so it would not start after a reboot"
  failed=1
fi
if [[ -e /etc/systemd/system/kubelet.service.d/20-local-build.conf ]]; then
  echo "FAIL: a drop-in still overrides the kubelet's ExecStart (see: systemctl cat kubelet)"
  failed=1
fi
exit "$failed"
