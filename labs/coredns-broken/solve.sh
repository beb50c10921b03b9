#!/bin/bash
# Restores the Corefile's zone, scales CoreDNS back up and waits for answers.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

corefile=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
fixed=${corefile//kubernetes cluster.locl /kubernetes cluster.local }
if [[ "$fixed" != "$corefile" ]]; then
  kubectl -n kube-system create configmap coredns --from-literal=Corefile="$fixed" \
    --dry-run=client -o yaml | kubectl replace -f -
fi
kubectl -n kube-system scale deployment coredns --replicas=2
kubectl -n kube-system rollout restart deployment coredns
kubectl -n kube-system rollout status deployment coredns --timeout=180s

dns=$(kubectl -n kube-system get service kube-dns -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 1 30); do
  if [[ -n "$(dig +short +time=2 +tries=1 @"$dns" kubernetes.default.svc.cluster.local A)" ]]; then
    exit 0
  fi
  sleep 2
done
echo "DNS still does not answer after the fix" >&2
exit 1
