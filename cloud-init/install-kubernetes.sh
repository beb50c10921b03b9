#!/bin/bash
# Prepares a node for kubeadm: kernel settings, qemu-guest-agent, containerd,
# and kubeadm/kubelet/kubectl of the flavor's minor version from pkgs.k8s.io.
# Package installs are skipped on a golden image (LABVIRT_GOLDEN_IMAGE=true)
# and whenever the binaries are already there. Safe to run on every boot.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

export DEBIAN_FRONTEND=noninteractive
apt_updated=false

apt_install() {
  if [[ "$apt_updated" != true ]]; then
    retry_for 600 10 apt-get update -q || die "apt-get update kept failing"
    apt_updated=true
  fi
  retry_for 600 10 apt-get install -y -q --no-install-recommends "$@" ||
    die "could not install $*"
}

have() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || return 1
  done
}

kernel_prerequisites() {
  printf 'overlay\nbr_netfilter\n' >/etc/modules-load.d/labvirt-kubernetes.conf
  modprobe overlay
  modprobe br_netfilter
  cat >/etc/sysctl.d/90-labvirt-kubernetes.conf <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
  sysctl --system >/dev/null
  # The kubelet refuses to run with swap on; cloud images have none, but a
  # custom image might.
  swapoff -a
  sed -i -E '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/#/' /etc/fstab
}

guest_agent() {
  if ! have qemu-ga; then
    apt_install qemu-guest-agent
  fi
  # On Ubuntu the unit is started by udev once the virtio port exists.
  systemctl start qemu-guest-agent || log "warning: qemu-guest-agent did not start; the VMI will not report AgentConnected"
}

containerd_runtime() {
  if ! have containerd; then
    [[ "$LABVIRT_GOLDEN_IMAGE" != true ]] || die "golden image without containerd"
    apt_install containerd
  fi
  if ! grep -qs 'SystemdCgroup = true' /etc/containerd/config.toml; then
    mkdir -p /etc/containerd
    containerd config default >/etc/containerd/config.toml
    # kubeadm configures the kubelet for the systemd cgroup driver.
    sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
    systemctl restart containerd
  fi
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >/etc/crictl.yaml
  systemctl enable --now containerd
}

kubernetes_packages() {
  if have kubeadm kubelet kubectl; then
    local installed
    installed=$(kubeadm version -o short)
    if [[ "$installed" != "v$LABVIRT_K8S_MINOR."* ]]; then
      log "warning: image has kubeadm $installed, flavor asks for $LABVIRT_K8S_MINOR; keeping the image's"
    fi
    return 0
  fi
  [[ "$LABVIRT_GOLDEN_IMAGE" != true ]] || die "golden image without kubeadm, kubelet and kubectl"
  local repo="https://pkgs.k8s.io/core:/stable:/v$LABVIRT_K8S_MINOR/deb/"
  local keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
  apt_install apt-transport-https ca-certificates curl gpg
  install -m 0755 -d /etc/apt/keyrings
  retry_for 300 10 curl -fsSL --max-time 60 -o /tmp/kubernetes-release.key "${repo}Release.key" ||
    die "could not download ${repo}Release.key"
  gpg --dearmor --yes -o "$keyring" /tmp/kubernetes-release.key
  rm -f /tmp/kubernetes-release.key
  printf 'deb [signed-by=%s] %s /\n' "$keyring" "$repo" >/etc/apt/sources.list.d/kubernetes.list
  apt_updated=false
  apt_install kubelet kubeadm kubectl
  apt-mark hold kubelet kubeadm kubectl >/dev/null
}

main() {
  load_cluster_env
  kernel_prerequisites
  guest_agent
  containerd_runtime
  kubernetes_packages
  systemctl enable kubelet
}

main "$@"
