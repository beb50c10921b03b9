#!/bin/bash
# Passes when the cluster DNS Service answers for the kubernetes Service.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

dns=$(kubectl -n kube-system get service kube-dns -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
want=$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')
if [[ -z "$dns" ]]; then
  echo "FAIL: the kube-dns Service in kube-system is missing; pods use its ClusterIP as their resolver"
  exit 1
fi
got=$(dig +short +time=2 +tries=2 @"$dns" kubernetes.default.svc.cluster.local A 2>/dev/null | tail -n 1 || true)
if [[ "$got" != "$want" ]]; then
  echo "FAIL: kubernetes.default.svc.cluster.local does not resolve through $dns (got '${got:-no answer}', expected $want)"
  exit 1
fi
echo "kubernetes.default.svc.cluster.local resolves to $got"
