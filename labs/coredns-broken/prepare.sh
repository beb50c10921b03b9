#!/bin/bash
# Waits until the CoreDNS pods are gone, so the student sees the outage.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

for _ in $(seq 1 60); do
  if [[ -z "$(kubectl -n kube-system get pods -l k8s-app=kube-dns -o name)" ]]; then
    exit 0
  fi
  sleep 2
done
echo "CoreDNS pods are still present 120 s after scaling to zero" >&2
exit 1
