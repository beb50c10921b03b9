#!/bin/bash
# Passes when student's kubeconfig names the same server as admin.conf.
set -euo pipefail

dest=/home/student/.kube/config
want=$(kubectl config view --kubeconfig /etc/kubernetes/admin.conf -o jsonpath='{.clusters[0].cluster.server}')
if [[ ! -f "$dest" ]]; then
  echo "FAIL: $dest does not exist"
  exit 1
fi
got=$(kubectl config view --kubeconfig "$dest" --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)
if [[ "$got" != "$want" ]]; then
  echo "FAIL: student's kubeconfig points at '${got:-nothing}', but the API server listens at $want"
  exit 1
fi
echo "student's kubeconfig points at $got"
