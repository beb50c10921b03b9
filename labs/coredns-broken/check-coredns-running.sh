#!/bin/bash
# Passes when the CoreDNS Deployment has at least one ready pod.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

ready=$(kubectl -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
wanted=$(kubectl -n kube-system get deployment coredns -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
if [[ "${ready:-0}" -lt 1 ]]; then
  echo "FAIL: the CoreDNS Deployment (kube-system/coredns) has no ready pods (${ready:-0} ready of ${wanted:-?} wanted)"
  exit 1
fi
echo "CoreDNS has $ready ready pod(s)"
