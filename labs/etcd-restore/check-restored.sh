#!/bin/bash
# Passes when prod/critical-settings exists with the data it had.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

if ! kubectl --request-timeout=10s get --raw=/readyz >/dev/null 2>&1; then
  echo "FAIL: the API server is not ready; check the etcd and kube-apiserver containers with crictl ps -a"
  exit 1
fi
gateway=$(kubectl -n prod get configmap critical-settings -o jsonpath='{.data.gateway}' 2>/dev/null || true)
if [[ "$gateway" != "https://pay.example.com" ]]; then
  echo "FAIL: the ConfigMap prod/critical-settings is not back (or lost its data); restore etcd from /opt/etcd-backup/snapshot.db"
  exit 1
fi
uid=$(kubectl -n prod get configmap critical-settings -o jsonpath='{.metadata.uid}')
if [[ "$uid" != "$(cat /var/lib/labvirt/etcd-restore.uid 2>/dev/null || true)" ]]; then
  echo "FAIL: prod/critical-settings was recreated by hand (it has a new uid); restore etcd from /opt/etcd-backup/snapshot.db to bring back the original"
  exit 1
fi
echo "prod/critical-settings is restored"
