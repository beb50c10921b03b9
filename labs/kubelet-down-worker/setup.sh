#!/bin/bash
# Breaks the kubelet on this worker: a drop-in points ExecStart at a binary
# that does not exist, and the unit is disabled and stopped.
set -euo pipefail

dropin=/etc/systemd/system/kubelet.service.d/20-local-build.conf
mkdir -p "$(dirname "$dropin")"
cat >"$dropin" <<'UNIT'
# Use the locally built kubelet (see ticket OPS-1432).
[Service]
ExecStart=
ExecStart=/opt/kubelet/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
UNIT
systemctl daemon-reload
systemctl disable kubelet 2>/dev/null
systemctl stop kubelet
