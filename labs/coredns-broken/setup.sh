#!/bin/bash
# Breaks cluster DNS twice: the Corefile serves the wrong zone
# (cluster.locl) and the CoreDNS Deployment is scaled to zero.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

# The checks use dig from the node.
if ! command -v dig >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q bind9-dnsutils >/dev/null
fi

corefile=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
broken=${corefile//kubernetes cluster.local /kubernetes cluster.locl }
if [[ "$broken" != "$corefile" ]]; then
  kubectl -n kube-system create configmap coredns --from-literal=Corefile="$broken" \
    --dry-run=client -o yaml | kubectl replace -f -
fi
kubectl -n kube-system scale deployment coredns --replicas=0
