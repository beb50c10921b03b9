#!/bin/bash
# Sim: a private copy of admin.conf, as the real solve.
set -euo pipefail
mkdir -p "/home/student/.kube"
cp "/etc/kubernetes/admin.conf" "/home/student/.kube/config"
chmod 0600 "/home/student/.kube/config"
