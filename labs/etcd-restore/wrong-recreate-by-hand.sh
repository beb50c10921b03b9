#!/bin/bash
# Wrong fix: recreate the namespace and the ConfigMap by hand (same data),
# then take the "fresh" snapshot, instead of restoring etcd.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl create namespace prod --dry-run=client -o yaml | kubectl apply -f -
kubectl -n prod create configmap critical-settings \
  --from-literal=gateway=https://pay.example.com --from-literal=retries=5 \
  --dry-run=client -o yaml | kubectl apply -f -
ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
  --cacert=/etc/kubernetes/pki/etcd/ca.crt \
  --cert=/etc/kubernetes/pki/etcd/server.crt \
  --key=/etc/kubernetes/pki/etcd/server.key \
  snapshot save /opt/etcd-backup/after-restore.db >/dev/null
