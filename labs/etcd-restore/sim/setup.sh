#!/bin/bash
# Sim: a fake etcd data dir without the ConfigMap and a snapshot with it.
set -euo pipefail
mkdir -p "/opt/etcd-backup" "/var/lib/etcd" "/var/lib/labvirt"
# Objects carry a uid, as on a real API server: a ConfigMap recreated by hand
# gets a new one.
uid=$(cat /proc/sys/kernel/random/uuid)
echo "$uid" >"/var/lib/labvirt/etcd-restore.uid"
printf '/registry/namespaces/prod\n/registry/configmaps/prod/critical-settings uid=%s gateway=https://pay.example.com\n' "$uid" \
  >"/opt/etcd-backup/snapshot.db"
echo '/registry/namespaces/default' >"/var/lib/etcd/db"
rm -f "/opt/etcd-backup/after-restore.db"
