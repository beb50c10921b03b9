#!/bin/bash
# Sim, as student: what kubectl needs from ~/.kube/config to work — the
# cluster's CA, a server where the API listens and the admin's credentials —
# compared field by field with admin.conf (any layout, names or extra
# contexts pass), and the file private.
set -euo pipefail

config="$HOME/.kube/config"
admin=/etc/kubernetes/admin.conf
if [[ ! -f "$config" ]]; then
  echo "FAIL: $config does not exist"
  exit 1
fi
if [[ "$(stat -c %a "$config")" =~ [1-7]$ ]]; then
  echo "FAIL: $config is readable by other users (mode $(stat -c %a "$config")); use chmod 600"
  exit 1
fi
field() { grep -oE "^ *$1: *[^ ]+" "$2" | head -n 1 | sed -E "s/^ *$1: *//"; }
if [[ "$(field server "$config")" != "$(field server "$admin")" ]]; then
  echo "FAIL: kubectl get nodes fails as student: dial tcp $(field server "$config" | sed 's#https://##'): connect: connection refused"
  exit 1
fi
if [[ "$(field certificate-authority-data "$config")" != "$(field certificate-authority-data "$admin")" ]]; then
  echo "FAIL: kubectl get nodes fails as student: tls: failed to verify certificate: x509: certificate signed by unknown authority"
  exit 1
fi
for cred in client-certificate-data client-key-data; do
  if [[ "$(field "$cred" "$config")" != "$(field "$cred" "$admin")" ]]; then
    echo "FAIL: kubectl get nodes fails as student: error: You must be logged in to the server (Unauthorized)"
    exit 1
  fi
done
echo "kubectl works for student"
