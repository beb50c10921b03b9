#!/bin/bash
# Sim: the config file has the expected content.
set -euo pipefail
image=$(cat "/etc/sim/billing/api.image" 2>/dev/null || true)
if [[ "$image" != "busybox:1.36" ]]; then
  echo "FAIL: the api container's image was changed to '${image:-none}'; keep busybox:1.36 and fix the configuration instead"
  exit 1
fi

if ! grep -qx 'listen=8080' "/etc/sim/billing/api-config/app.conf" 2>/dev/null; then
  echo "FAIL: /etc/app/app.conf in the running api container does not contain listen=8080"
  exit 1
fi
echo "the api container reads listen=8080"
