#!/bin/bash
# Passes when web still selects disktype=ssd and all its pods run on worker-2.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

selector=$(kubectl -n shop get deployment web -o jsonpath='{.spec.template.spec.nodeSelector.disktype}' 2>/dev/null || true)
if [[ "$selector" != "ssd" ]]; then
  echo "FAIL: shop/web no longer has the nodeSelector disktype=ssd; keep it and make worker-2 match instead"
  exit 1
fi
nodes=$(kubectl -n shop get pods -l app=web --field-selector=status.phase=Running -o jsonpath='{.items[*].spec.nodeName}')
if [[ -z "$nodes" ]]; then
  echo "FAIL: no pod of shop/web is running yet"
  exit 1
fi
for n in $nodes; do
  if [[ "$n" != "worker-2" ]]; then
    echo "FAIL: a pod of shop/web runs on $n, which has no SSD; only worker-2 has one"
    exit 1
  fi
done
echo "every running pod of shop/web is on worker-2"
