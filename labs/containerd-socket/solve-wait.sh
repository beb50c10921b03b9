#!/bin/bash
# Waits for worker-2 to report Ready again after the fix.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl wait --for=condition=Ready node/worker-2 --timeout=240s
