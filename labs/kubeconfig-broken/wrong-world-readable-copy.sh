#!/bin/bash
# Wrong fix: copy root's admin.conf for the student, readable by every user.
set -euo pipefail

install -d -o student -g student /home/student/.kube
install -o student -g student -m 0644 /etc/kubernetes/admin.conf /home/student/.kube/config
