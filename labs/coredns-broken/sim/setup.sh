#!/bin/bash
# Sim: a fake Corefile with the wrong zone and a replica count of zero.
set -euo pipefail
dir="/etc/sim/coredns"

mkdir -p "$dir"
cat >"$dir/Corefile" <<'COREFILE'
.:53 {
    errors
    health
    ready
    kubernetes cluster.locl in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    reload
}
COREFILE
echo 0 >"$dir/replicas"
