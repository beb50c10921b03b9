#!/bin/bash
# Runs as student: passes when kubectl works with ~/.kube/config, and the
# file is private to student.
set -euo pipefail

config="$HOME/.kube/config"
if [[ ! -f "$config" ]]; then
  echo "FAIL: $config does not exist"
  exit 1
fi
if [[ "$(stat -c %U "$config")" != "$(id -un)" ]]; then
  echo "FAIL: $config is owned by $(stat -c %U "$config"), not by $(id -un)"
  exit 1
fi
if [[ "$(stat -c %a "$config")" =~ [1-7]$ ]]; then
  echo "FAIL: $config is readable by other users (mode $(stat -c %a "$config")); use chmod 600"
  exit 1
fi
if ! err=$(kubectl --request-timeout=10s get nodes 2>&1 >/dev/null); then
  echo "FAIL: kubectl get nodes fails as $(id -un): $(head -n 1 <<<"$err")"
  exit 1
fi
echo "kubectl works for $(id -un)"
