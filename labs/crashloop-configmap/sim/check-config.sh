#!/bin/bash
# Sim: the config file has the expected content.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

if ! grep -qx 'listen=8080' "$root/etc/sim/billing/api-config/app.conf" 2>/dev/null; then
  echo "FAIL: /etc/app/app.conf in the running api container does not contain listen=8080"
  exit 1
fi
echo "the api container reads listen=8080"
