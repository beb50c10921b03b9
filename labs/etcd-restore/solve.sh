#!/bin/bash
# Restores etcd into a new data dir, points the static pod at it, restarts
# the control plane, then takes the fresh snapshot. Skips the restore when
# the ConfigMap is already back (so running it twice is harmless).
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

manifest=/etc/kubernetes/manifests/etcd.yaml
certs=(--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key)
crictl() { command crictl --runtime-endpoint unix:///run/containerd/containerd.sock "$@"; }
restored() { kubectl --request-timeout=5s -n prod get configmap critical-settings >/dev/null 2>&1; }

if ! restored; then
  name=$(sed -n 's/.*--name=\(.*\)$/\1/p' "$manifest" | head -n 1)
  peer=$(sed -n 's/.*--initial-advertise-peer-urls=\(.*\)$/\1/p' "$manifest" | head -n 1)
  target=/var/lib/etcd-restored-$(date +%s)
  old=$(crictl ps --name '^etcd$' --state running -q | head -n 1)
  # etcdutl where installed; registry.k8s.io/etcd 3.5 ships only etcdctl,
  # whose snapshot restore (deprecated in 3.5) takes the same flags.
  restore=(etcdutl)
  command -v etcdutl >/dev/null || restore=(env ETCDCTL_API=3 etcdctl)
  "${restore[@]}" snapshot restore /opt/etcd-backup/snapshot.db --data-dir "$target" \
    --name "$name" --initial-cluster "$name=$peer" --initial-advertise-peer-urls "$peer"
  # Only the hostPath line starts with "path:"; the container keeps /var/lib/etcd.
  sed -i -E "s#^(\s*path: )/var/lib/etcd(-restored-[0-9]+)?\$#\\1$target#" "$manifest"

  # Wait for the kubelet to replace the etcd container and for it to be healthy.
  for _ in $(seq 1 60); do
    now=$(crictl ps --name '^etcd$' --state running -q | head -n 1)
    if [[ -n "$now" && "$now" != "$old" ]] &&
      ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "${certs[@]}" endpoint health >/dev/null 2>&1; then
      break
    fi
    sleep 5
  done
  # The API server caches what it watched from the old etcd: restart it and its clients.
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    for id in $(crictl ps --name "^$c\$" -q); do
      crictl stop "$id" >/dev/null
    done
  done
  for _ in $(seq 1 60); do
    if restored; then break; fi
    sleep 5
  done
  restored || { echo "prod/critical-settings did not come back after the restore" >&2; exit 1; }
fi

ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "${certs[@]}" \
  snapshot save /opt/etcd-backup/after-restore.db >/dev/null
