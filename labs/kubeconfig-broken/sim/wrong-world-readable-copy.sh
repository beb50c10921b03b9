#!/bin/bash
# Sim wrong fix: copy admin.conf for the student, readable by every user.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/home/student/.kube"
cp "$root/etc/kubernetes/admin.conf" "$root/home/student/.kube/config"
chmod 0644 "$root/home/student/.kube/config"
