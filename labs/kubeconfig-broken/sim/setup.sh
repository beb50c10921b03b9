#!/bin/bash
# Sim: student's kubeconfig is admin.conf with the wrong API port and a
# foreign CA, as in the real setup. On a sim control plane admin.conf is the
# student cluster's; where there is none (a bare sandbox), a stand-in.
set -euo pipefail

admin=/etc/kubernetes/admin.conf
if [[ ! -f "$admin" ]]; then
  mkdir -p /etc/kubernetes
  cat >"$admin" <<'CONF'
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0xVU1RFUi1DQQ==
    server: https://10.0.0.10:6443
  name: kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: QURNSU4tQ0VSVA==
    client-key-data: QURNSU4tS0VZ
CONF
fi
mkdir -p /home/student/.kube
sed -E \
  -e 's#(server: https://[^ ]+):6443$#\1:6444#' \
  -e 's#(certificate-authority-data: ).*#\1V1JPTkctQ0E=#' \
  "$admin" >/home/student/.kube/config
chmod 0600 /home/student/.kube/config
