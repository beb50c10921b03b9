#!/bin/bash
# Labels worker-2, lifts its taint, lowers the requests and waits.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl label node worker-2 disktype=ssd --overwrite
if kubectl get node worker-2 -o jsonpath='{.spec.taints[*].key}' | grep -qw maintenance; then
  kubectl taint node worker-2 maintenance-
fi
kubectl -n shop set resources deployment web -c web --requests=cpu=100m,memory=64Mi
kubectl -n shop rollout status deployment web --timeout=240s
