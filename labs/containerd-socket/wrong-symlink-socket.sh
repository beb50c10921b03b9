#!/bin/bash
# Wrong fix: a symlink from the kubelet's endpoint to containerd's socket.
# It works until /run is emptied at the next reboot.
set -euo pipefail

ln -sfn /run/containerd/containerd-v2.sock /run/containerd/containerd.sock
systemctl restart kubelet
