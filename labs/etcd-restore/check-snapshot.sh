#!/bin/bash
# Passes when after-restore.db is a valid snapshot taken after the restore:
# the ConfigMap is back and the file is newer than the running etcd.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

snap=/opt/etcd-backup/after-restore.db
if [[ ! -s "$snap" ]]; then
  echo "FAIL: $snap does not exist yet; take it with etcdctl snapshot save once the restore is done"
  exit 1
fi
# etcdutl where installed; else etcdctl's own (deprecated in 3.5, still there),
# as registry.k8s.io/etcd 3.5 ships no etcdutl.
snapshot_status() {
  if command -v etcdutl >/dev/null; then
    etcdutl snapshot status "$1"
  else
    ETCDCTL_API=3 etcdctl snapshot status "$1"
  fi
}
if ! snapshot_status "$snap" >/dev/null 2>&1; then
  echo "FAIL: $snap is not a valid etcd snapshot (etcdctl snapshot status rejects it)"
  exit 1
fi
if ! kubectl --request-timeout=10s -n prod get configmap critical-settings >/dev/null 2>&1; then
  echo "FAIL: $snap cannot be from after the restore: prod/critical-settings is not back yet"
  exit 1
fi
# createdAt of the running etcd container, in nanoseconds since the epoch.
created=$(crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps --name '^etcd$' --state running -o json |
  grep -o '"createdAt": *"[0-9]*"' | grep -o '[0-9][0-9]*' | head -n 1 || true)
if [[ -n "$created" && "$(stat -c %Y "$snap")" -lt $((created / 1000000000)) ]]; then
  echo "FAIL: $snap is older than the running etcd; take it after the restore"
  exit 1
fi
echo "$snap is a valid snapshot taken after the restore"
