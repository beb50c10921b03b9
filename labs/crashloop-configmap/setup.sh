#!/bin/bash
# Deploys billing/api whose ConfigMap has the right content under the wrong
# key (app.cnf), so /etc/app/app.conf is missing and the app exits.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: billing
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
  namespace: billing
data:
  app.cnf: |
    listen=8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: billing
spec:
  replicas: 1
  selector:
    matchLabels: { app: api }
  template:
    metadata:
      labels: { app: api }
    spec:
      # One-node clusters: the control plane is the only node.
      tolerations:
        - { key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule }
      containers:
        - name: api
          image: busybox:1.36
          command: ["sh", "-c"]
          args:
            - |
              if [ ! -f /etc/app/app.conf ]; then
                echo "fatal: cannot open /etc/app/app.conf: no such file" >&2
                exit 1
              fi
              echo "config loaded: $(cat /etc/app/app.conf)"
              exec sleep 1000000
          readinessProbe:
            exec: { command: ["cat", "/etc/app/app.conf"] }
            periodSeconds: 5
          volumeMounts:
            - { name: config, mountPath: /etc/app }
      volumes:
        - name: config
          configMap: { name: api-config }
YAML
