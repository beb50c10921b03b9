#!/bin/bash
# Sim: a fake admin.conf and a student kubeconfig with the wrong port and CA.
set -euo pipefail
mkdir -p "/etc/kubernetes" "/home/student/.kube"
cat >"/etc/kubernetes/admin.conf" <<'CONF'
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0xVU1RFUi1DQQ==
    server: https://10.0.0.10:6443
  name: kubernetes
CONF
sed -e 's#:6443$#:6444#' -e 's#certificate-authority-data: .*#certificate-authority-data: V1JPTkctQ0E=#' \
  "/etc/kubernetes/admin.conf" >"/home/student/.kube/config"
chmod 0644 "/home/student/.kube/config"
