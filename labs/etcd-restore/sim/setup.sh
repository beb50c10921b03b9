#!/bin/bash
# Sim: a fake etcd data dir without the ConfigMap and a snapshot with it.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/opt/etcd-backup" "$root/var/lib/etcd" "$root/var/lib/labvirt"
# Objects carry a uid, as on a real API server: a ConfigMap recreated by hand
# gets a new one.
uid=$(cat /proc/sys/kernel/random/uuid)
echo "$uid" >"$root/var/lib/labvirt/etcd-restore.uid"
printf '/registry/namespaces/prod\n/registry/configmaps/prod/critical-settings uid=%s gateway=https://pay.example.com\n' "$uid" \
  >"$root/opt/etcd-backup/snapshot.db"
echo '/registry/namespaces/default' >"$root/var/lib/etcd/db"
rm -f "$root/opt/etcd-backup/after-restore.db"
