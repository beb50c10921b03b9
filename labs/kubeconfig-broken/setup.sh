#!/bin/bash
# Gives student a kubeconfig built from admin.conf with the wrong API port
# and the CA of an unrelated, freshly made authority.
set -euo pipefail

admin=/etc/kubernetes/admin.conf
dest=/home/student/.kube/config
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kubernetes" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
ca=$(base64 -w0 "$work/ca.crt")
install -d -o student -g student -m 0700 /home/student/.kube
sed -E \
  -e 's#(server: https://[^ ]+):6443$#\1:6444#' \
  -e "s#(certificate-authority-data: ).*#\\1${ca}#" \
  "$admin" >"$work/config"
install -o student -g student -m 0600 "$work/config" "$dest"
