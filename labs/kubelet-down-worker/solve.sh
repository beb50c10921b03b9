#!/bin/bash
# Removes the bad drop-in and starts the kubelet for good.
set -euo pipefail

rm -f /etc/systemd/system/kubelet.service.d/20-local-build.conf
systemctl daemon-reload
systemctl enable kubelet 2>/dev/null
systemctl restart kubelet
