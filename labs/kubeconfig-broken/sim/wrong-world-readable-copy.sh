#!/bin/bash
# Sim wrong fix: copy admin.conf for the student, readable by every user.
set -euo pipefail
mkdir -p "/home/student/.kube"
cp "/etc/kubernetes/admin.conf" "/home/student/.kube/config"
chmod 0644 "/home/student/.kube/config"
