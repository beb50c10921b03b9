#!/bin/bash
# Waits for the three workloads, so the student can exec into them at once.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl -n backend rollout status deployment api --timeout=200s
kubectl -n frontend wait --for=condition=Ready pod/client --timeout=200s
kubectl -n other wait --for=condition=Ready pod/intruder --timeout=200s
