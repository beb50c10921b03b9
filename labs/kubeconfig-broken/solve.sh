#!/bin/bash
# Gives student a correct copy of the admin kubeconfig.
set -euo pipefail

install -d -o student -g student -m 0700 /home/student/.kube
install -o student -g student -m 0600 /etc/kubernetes/admin.conf /home/student/.kube/config
