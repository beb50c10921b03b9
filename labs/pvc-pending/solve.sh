#!/bin/bash
# Provides a matching hostPath PersistentVolume and waits for the pod.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: PersistentVolume
metadata:
  name: reports-pv
spec:
  storageClassName: fast
  capacity: { storage: 1Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: { path: /srv/reports, type: DirectoryOrCreate }
YAML
kubectl -n reports wait --for=jsonpath='{.status.phase}'=Bound pvc/report-data --timeout=120s
kubectl -n reports wait --for=condition=Ready pod/reporter --timeout=180s
