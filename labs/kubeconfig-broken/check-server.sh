#!/bin/bash
# Passes when student's kubeconfig names a server that answers as this
# cluster's API server (TLS verified with the cluster CA), whatever address
# form the student chose.
set -euo pipefail

dest=/home/student/.kube/config
ca=/etc/kubernetes/pki/ca.crt
if [[ ! -f "$dest" ]]; then
  echo "FAIL: $dest does not exist"
  exit 1
fi
got=$(kubectl config view --kubeconfig "$dest" --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)
if [[ ! "$got" =~ ^https://[A-Za-z0-9.:\[\]-]+(:[0-9]+)?/?$ ]]; then
  echo "FAIL: student's kubeconfig points at '${got:-nothing}', which is not an https:// address of the API server"
  exit 1
fi
# Any address of this cluster's API server is right (the control plane's
# name, its IP, 127.0.0.1): it must answer over TLS with a certificate the
# cluster CA signed for that name. Any HTTP status counts as an answer.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$ca" "${got%/}/version" || true)
if [[ -z "$code" || "$code" == 000 ]]; then
  echo "FAIL: nothing at '$got' answers as this cluster's API server (wrong host or port, or a certificate the cluster CA did not sign for that name)"
  exit 1
fi
echo "student's kubeconfig points at $got, which is this cluster's API server"
