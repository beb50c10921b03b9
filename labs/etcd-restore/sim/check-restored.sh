#!/bin/bash
# Sim: the fake etcd data contains the ConfigMap.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

if ! grep -q 'critical-settings gateway=https://pay.example.com' "$root/var/lib/etcd/db" 2>/dev/null; then
  echo "FAIL: the ConfigMap prod/critical-settings is not back (or lost its data); restore etcd from /opt/etcd-backup/snapshot.db"
  exit 1
fi
echo "prod/critical-settings is restored"
