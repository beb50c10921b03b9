#!/bin/bash
# Sim wrong fix: recreate the ConfigMap by hand (a new uid), then snapshot.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/var/lib/etcd" "$root/opt/etcd-backup"
printf '/registry/namespaces/prod\n/registry/configmaps/prod/critical-settings uid=%s gateway=https://pay.example.com\n' \
  "$(cat /proc/sys/kernel/random/uuid)" >>"$root/var/lib/etcd/db"
cp "$root/var/lib/etcd/db" "$root/opt/etcd-backup/after-restore.db"
