#!/bin/bash
# Sim wrong fix: scale CoreDNS up but leave its Corefile serving the wrong domain.
set -euo pipefail
mkdir -p "/etc/sim/coredns"
echo 2 >"/etc/sim/coredns/replicas"
