#!/bin/bash
# Sim wrong fix: swap the crashing image for one that does not read the config.
set -euo pipefail
mkdir -p "/etc/sim/billing"
echo nginx:1.27-alpine >"/etc/sim/billing/api.image"
