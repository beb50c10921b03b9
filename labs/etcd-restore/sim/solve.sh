#!/bin/bash
# Sim: "restore" the snapshot, then snapshot again.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

if ! grep -q 'critical-settings' "$root/var/lib/etcd/db" 2>/dev/null; then
  mkdir -p "$root/var/lib/etcd"
  cp "$root/opt/etcd-backup/snapshot.db" "$root/var/lib/etcd/db"
fi
cp "$root/var/lib/etcd/db" "$root/opt/etcd-backup/after-restore.db"
