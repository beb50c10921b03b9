#!/bin/bash
# Sim wrong fix: give the pod an emptyDir instead of a volume for its claim.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/etc/sim/storage"
echo 'volume=emptyDir' >"$root/etc/sim/storage/reporter.pod"
