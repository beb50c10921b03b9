#!/bin/bash
# Passes when the running container sees listen=8080 in /etc/app/app.conf.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

image=$(kubectl -n billing get deployment api -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)
if [[ "$image" != "busybox:1.36" ]]; then
  echo "FAIL: the api container's image was changed to '${image:-none}'; keep busybox:1.36 and fix the configuration instead"
  exit 1
fi
conf=$(kubectl -n billing exec deploy/api -c api -- cat /etc/app/app.conf 2>/dev/null || true)
if ! grep -qx 'listen=8080' <<<"$conf"; then
  echo "FAIL: /etc/app/app.conf in the running api container does not contain listen=8080"
  exit 1
fi
echo "the api container reads listen=8080"
