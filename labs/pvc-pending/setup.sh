#!/bin/bash
# Creates a claim for a storage class nobody provides, and a pod using it.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: reports
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: report-data
  namespace: reports
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources:
    requests: { storage: 1Gi }
---
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
      readinessProbe:
        exec: { command: ["test", "-s", "/data/report.log"] }
        periodSeconds: 5
      volumeMounts:
        - { name: data, mountPath: /data }
  volumes:
    - name: data
      persistentVolumeClaim: { claimName: report-data }
YAML
