#!/bin/bash
# Sim: copy the fake admin.conf, privately.
set -euo pipefail
mkdir -p "/home/student/.kube"
cp "/etc/kubernetes/admin.conf" "/home/student/.kube/config"
chmod 0600 "/home/student/.kube/config"
