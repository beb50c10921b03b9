#!/bin/bash
# Installs etcdctl (and etcdutl where the image has it) from the running etcd
# image, creates prod/critical-settings, records its uid, snapshots etcd,
# then deletes the namespace.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

crictl() { command crictl --runtime-endpoint unix:///run/containerd/containerd.sock "$@"; }

if ! command -v etcdctl >/dev/null; then
  # The etcd image carries etcdctl; registry.k8s.io/etcd 3.5 has no etcdutl
  # (etcd-io/etcd#13764), so the lab uses etcdctl's snapshot commands,
  # which 3.5 still has. Its root filesystem is visible to root on the host
  # while the container runs.
  cid=$(crictl ps --name '^etcd$' --state running -q | head -n 1)
  [[ -n "$cid" ]] || { echo "no running etcd container" >&2; exit 1; }
  rootfs=/run/containerd/io.containerd.runtime.v2.task/k8s.io/$cid/rootfs
  install -m 0755 "$rootfs/usr/local/bin/etcdctl" /usr/local/bin/
  if [[ -x "$rootfs/usr/local/bin/etcdutl" ]]; then
    install -m 0755 "$rootfs/usr/local/bin/etcdutl" /usr/local/bin/
  fi
fi

kubectl create namespace prod --dry-run=client -o yaml | kubectl apply -f -
kubectl -n prod create configmap critical-settings \
  --from-literal=gateway=https://pay.example.com --from-literal=retries=5 \
  --dry-run=client -o yaml | kubectl apply -f -

# The API server gives every object a new uid: the check tells the restored
# ConfigMap from one recreated by hand with the same data.
mkdir -p /var/lib/labvirt
kubectl -n prod get configmap critical-settings -o jsonpath='{.metadata.uid}' >/var/lib/labvirt/etcd-restore.uid

mkdir -p /opt/etcd-backup
rm -f /opt/etcd-backup/after-restore.db
ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
  --cacert=/etc/kubernetes/pki/etcd/ca.crt \
  --cert=/etc/kubernetes/pki/etcd/server.crt \
  --key=/etc/kubernetes/pki/etcd/server.key \
  snapshot save /opt/etcd-backup/snapshot.db >/dev/null

kubectl delete namespace prod --wait=true --timeout=180s
