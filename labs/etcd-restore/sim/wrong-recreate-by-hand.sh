#!/bin/bash
# Sim wrong fix: recreate the ConfigMap by hand (a new uid), then snapshot.
set -euo pipefail
mkdir -p "/var/lib/etcd" "/opt/etcd-backup"
printf '/registry/namespaces/prod\n/registry/configmaps/prod/critical-settings uid=%s gateway=https://pay.example.com\n' \
  "$(cat /proc/sys/kernel/random/uuid)" >>"/var/lib/etcd/db"
cp "/var/lib/etcd/db" "/opt/etcd-backup/after-restore.db"
