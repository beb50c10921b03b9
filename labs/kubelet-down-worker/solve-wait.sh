#!/bin/bash
# Waits for worker-1 to report Ready again after the fix.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl wait --for=condition=Ready node/worker-1 --timeout=240s
