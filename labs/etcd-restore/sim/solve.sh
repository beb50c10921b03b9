#!/bin/bash
# Sim: "restore" the snapshot, then snapshot again.
set -euo pipefail
if ! grep -q 'critical-settings' "/var/lib/etcd/db" 2>/dev/null; then
  mkdir -p "/var/lib/etcd"
  cp "/opt/etcd-backup/snapshot.db" "/var/lib/etcd/db"
fi
cp "/var/lib/etcd/db" "/opt/etcd-backup/after-restore.db"
