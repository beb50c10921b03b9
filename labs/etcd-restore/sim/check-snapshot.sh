#!/bin/bash
# Sim: the fresh snapshot exists and contains the ConfigMap.
set -euo pipefail
snap="/opt/etcd-backup/after-restore.db"
if [[ ! -s "$snap" ]]; then
  echo "FAIL: /opt/etcd-backup/after-restore.db does not exist yet; take it with etcdctl snapshot save once the restore is done"
  exit 1
fi
if ! grep -q 'critical-settings' "$snap"; then
  echo "FAIL: /opt/etcd-backup/after-restore.db does not contain prod/critical-settings; take it after the restore"
  exit 1
fi
echo "the fresh snapshot is valid"
