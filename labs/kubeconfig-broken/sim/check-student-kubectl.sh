#!/bin/bash
# Sim, as student: the fake kubeconfig matches admin.conf and is private.
set -euo pipefail
config="/home/student/.kube/config"
if ! cmp -s "$config" "/etc/kubernetes/admin.conf"; then
  echo "FAIL: kubectl get nodes fails as student: tls: failed to verify certificate: x509: certificate signed by unknown authority"
  exit 1
fi
if [[ "$(stat -c %a "$config")" =~ [1-7]$ ]]; then
  echo "FAIL: $config is readable by other users (mode $(stat -c %a "$config")); use chmod 600"
  exit 1
fi
echo "kubectl works for student"
