#!/bin/bash
# Gives student a correct copy of the admin kubeconfig, addressing the API
# server by the node's IP instead of admin.conf's name: any address that
# answers with the cluster CA's certificate is a right answer, and solving
# with a different one than admin.conf's proves the check accepts it.
set -euo pipefail

dest=/home/student/.kube/config
install -d -o student -g student -m 0700 /home/student/.kube
install -o student -g student -m 0600 /etc/kubernetes/admin.conf "$dest"
# kubeadm puts the node's advertise address (its first address) in the API
# server's certificate.
ip=$(hostname -I | awk '{ print $1 }')
cluster=$(kubectl config view --kubeconfig "$dest" -o jsonpath='{.clusters[0].name}')
kubectl config set-cluster "$cluster" --kubeconfig "$dest" --server "https://$ip:6443" >/dev/null
chown student:student "$dest"
chmod 0600 "$dest"
