#!/bin/bash
# Sim: the fake etcd data contains the ConfigMap.
set -euo pipefail
if ! grep -q 'critical-settings uid=[^ ]* gateway=https://pay.example.com' "/var/lib/etcd/db" 2>/dev/null; then
  echo "FAIL: the ConfigMap prod/critical-settings is not back (or lost its data); restore etcd from /opt/etcd-backup/snapshot.db"
  exit 1
fi
uid=$(cat "/var/lib/labvirt/etcd-restore.uid" 2>/dev/null || true)
if ! grep -q "critical-settings uid=$uid " "/var/lib/etcd/db"; then
  echo "FAIL: prod/critical-settings was recreated by hand (it has a new uid); restore etcd from /opt/etcd-backup/snapshot.db to bring back the original"
  exit 1
fi
echo "prod/critical-settings is restored"
