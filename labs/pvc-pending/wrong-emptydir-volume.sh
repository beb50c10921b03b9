#!/bin/bash
# Wrong fix: give the pod an emptyDir instead of a volume for its claim.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl -n reports delete pod reporter --wait=true --ignore-not-found
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: reporter
  namespace: reports
spec:
  tolerations:
    - { key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule }
  containers:
    - name: reporter
      image: busybox:1.36
      command: ["sh", "-c", "date >> /data/report.log && exec sleep 1000000"]
      volumeMounts:
        - { name: data, mountPath: /data }
  volumes:
    - name: data
      emptyDir: {}
YAML
kubectl -n reports wait --for=condition=Ready pod/reporter --timeout=120s || true
