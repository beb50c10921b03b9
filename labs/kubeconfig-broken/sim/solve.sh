#!/bin/bash
# Sim: copy the fake admin.conf, privately.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/home/student/.kube"
cp "$root/etc/kubernetes/admin.conf" "$root/home/student/.kube/config"
chmod 0600 "$root/home/student/.kube/config"
