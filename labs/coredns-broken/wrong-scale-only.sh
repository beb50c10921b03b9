#!/bin/bash
# Wrong fix: scale CoreDNS up but leave its Corefile serving the wrong domain.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl -n kube-system scale deployment coredns --replicas=2
kubectl -n kube-system rollout status deployment coredns --timeout=120s || true
