#!/bin/bash
# Sim wrong fix: give the pod an emptyDir instead of a volume for its claim.
set -euo pipefail
mkdir -p "/etc/sim/storage"
echo 'volume=emptyDir' >"/etc/sim/storage/reporter.pod"
