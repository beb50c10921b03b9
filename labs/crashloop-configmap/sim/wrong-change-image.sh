#!/bin/bash
# Sim wrong fix: swap the crashing image for one that does not read the config.
set -euo pipefail
root="${LABVIRT_GUEST_ROOT:-}"

mkdir -p "$root/etc/sim/billing"
echo nginx:1.27-alpine >"$root/etc/sim/billing/api.image"
