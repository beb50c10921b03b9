#!/bin/bash
# Passes when the client reaches the api and the intruder does not.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

for p in default-deny-ingress:backend default-deny-egress:frontend; do
  if ! kubectl -n "${p#*:}" get networkpolicy "${p%%:*}" >/dev/null 2>&1; then
    echo "FAIL: the NetworkPolicy ${p#*:}/${p%%:*} was deleted; keep the default-deny policies and add what is missing"
    exit 1
  fi
done
if ! kubectl -n frontend exec client -- wget -qO- -T 3 http://api.backend.svc.cluster.local >/dev/null 2>&1; then
  echo "FAIL: frontend/client gets no answer from http://api.backend (port 80)"
  exit 1
fi
# Deleting the intruder, or taking its label away, would make "it cannot
# reach the api" true for free: it must exist, be Ready, and still look like
# a frontend pod (role=frontend) from another namespace.
ready=$(kubectl -n other get pod intruder -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
if [[ "$ready" != "True" ]]; then
  echo "FAIL: other/intruder is not there or not Ready; keep it running: it shows that other namespaces stay blocked"
  exit 1
fi
role=$(kubectl -n other get pod intruder -o jsonpath='{.metadata.labels.role}')
if [[ "$role" != "frontend" ]]; then
  echo "FAIL: other/intruder lost its label role=frontend; leave it as it was: the policy must tell namespaces apart, not pod labels alone"
  exit 1
fi
ip=$(kubectl -n backend get service api -o jsonpath='{.spec.clusterIP}')
if kubectl -n other exec intruder -- wget -qO- -T 3 "http://$ip" >/dev/null 2>&1; then
  echo "FAIL: other/intruder can reach the api too; only pods in namespace frontend may"
  exit 1
fi
echo "only frontend reaches api.backend"
