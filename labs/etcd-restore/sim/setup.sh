#!/bin/bash
# Sim: a fake etcd data dir without the ConfigMap and a snapshot with it.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/opt/etcd-backup" "$root/var/lib/etcd"
printf '/registry/namespaces/prod\n/registry/configmaps/prod/critical-settings gateway=https://pay.example.com\n' \
  >"$root/opt/etcd-backup/snapshot.db"
echo '/registry/namespaces/default' >"$root/var/lib/etcd/db"
rm -f "$root/opt/etcd-backup/after-restore.db"
