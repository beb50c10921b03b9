#!/bin/bash
# Sim: the server of student's kubeconfig is admin.conf's.
set -euo pipefail
want=$(grep -o 'server: .*' "/etc/kubernetes/admin.conf")
got=$(grep -o 'server: .*' "/home/student/.kube/config" 2>/dev/null || true)
if [[ "$got" != "$want" ]]; then
  echo "FAIL: student's kubeconfig points at '${got#server: }', but the API server listens at ${want#server: }"
  exit 1
fi
echo "student's kubeconfig points at ${got#server: }"
