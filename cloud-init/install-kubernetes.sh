#!/bin/bash
# Prepares a node for kubeadm: the data disk, kernel settings,
# qemu-guest-agent, containerd, and kubeadm/kubelet/kubectl of the flavor's
# minor version from pkgs.k8s.io. Package installs are skipped on a golden
# image (LABVIRT_GOLDEN_IMAGE=true) and whenever the binaries are already
# there (vm-templates/images/ bakes exactly the tools checked here, see
# GOLDEN_TOOLS). Safe to run on every boot.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

export DEBIAN_FRONTEND=noninteractive
apt_updated=false

# What a golden image must carry for this script to install nothing; the
# golden-image recipe (vm-templates/images/bake.sh) bakes this list.
readonly GOLDEN_TOOLS=(qemu-ga containerd runc kubeadm kubelet kubectl)

# The emptyDisk labvirt attaches (vm.*.dataDisk), by the serial it sets.
readonly DATA_DISK=/dev/disk/by-id/virtio-labvirt-data
readonly DATA_MOUNT=/var/lib/labvirt-data
readonly DATA_DIRS=(/var/lib/containerd /var/lib/kubelet)

apt_install() {
  if [[ "$apt_updated" != true ]]; then
    # A reboot during an earlier install leaves dpkg half-configured, and
    # every apt-get after that refuses to run until this is done.
    dpkg --configure -a || log "warning: dpkg --configure -a failed"
    retry_until_deadline 10 apt-get update -q || die "apt-get update kept failing"
    apt_updated=true
  fi
  retry_until_deadline 10 apt-get install -y -q --no-install-recommends "$@" ||
    die "could not install $*"
}

# Formats the data disk on first use and mounts it under the directories
# that grow (images, the kubelet's pods); what the image already holds there
# (a golden image's pre-pulled images) is copied over first.
data_disk() {
  if [[ ! -b "$DATA_DISK" ]]; then
    log "warning: no data disk at $DATA_DISK; using the root disk"
    return 0
  fi
  if ! blkid "$DATA_DISK" >/dev/null 2>&1; then
    mkfs.ext4 -q -L labvirt-data "$DATA_DISK"
  fi
  mkdir -p "$DATA_MOUNT"
  mountpoint -q "$DATA_MOUNT" || mount "$DATA_DISK" "$DATA_MOUNT"
  grep -q " $DATA_MOUNT " /etc/fstab ||
    printf '%s %s ext4 defaults,nofail 0 2\n' "$DATA_DISK" "$DATA_MOUNT" >>/etc/fstab
  local dir target
  for dir in "${DATA_DIRS[@]}"; do
    mountpoint -q "$dir" && continue
    # A golden image starts containerd at boot: nothing may hold files in
    # the directory while it is copied and mounted over
    # (containerd_config starts it again).
    systemctl stop kubelet containerd 2>/dev/null || true
    target="$DATA_MOUNT/${dir##*/}"
    if [[ ! -d "$target" ]]; then
      mkdir -p "$dir" "$target.tmp"
      cp -a "$dir/." "$target.tmp/"
      mv "$target.tmp" "$target"
    fi
    mount --bind "$target" "$dir"
    grep -q " $dir " /etc/fstab || printf '%s %s none bind,nofail 0 0\n' "$target" "$dir" >>/etc/fstab
  done
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
}

# kubeadm's pause image for the installed version: containerd's default
# sandbox_image differs, and kubeadm warns (and pulls twice) when they do.
pause_image() {
  kubeadm config images list --kubernetes-version "$(kubeadm version -o short)" 2>/dev/null |
    grep -m1 '/pause:'
}

# containerd's configuration, rewritten on every run and applied only when it
# changed: systemd cgroups (as kubeadm configures the kubelet), kubeadm's
# pause image, registry mirrors from /etc/containerd/certs.d (vm.registryMirrors).
containerd_config() {
  local pause new=/etc/containerd/config.toml.labvirt
  pause=$(pause_image) || die "kubeadm does not list a pause image"
  mkdir -p /etc/containerd/certs.d
  containerd config default | containerd_config_from_default "$pause" >"$new" ||
    die "containerd's default configuration is not of the expected shape"
  # The proxy drop-in (vm.proxy), if any, must be read before the restart.
  systemctl daemon-reload
  if ! cmp -s "$new" /etc/containerd/config.toml; then
    mv "$new" /etc/containerd/config.toml
    systemctl restart containerd
  else
    rm -f "$new"
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
  apt_install apt-transport-https ca-certificates curl gpg openssl
  install -m 0755 -d /etc/apt/keyrings
  retry_until_deadline 10 curl -fsSL --max-time 60 -o /tmp/kubernetes-release.key "${repo}Release.key" ||
    die "could not download ${repo}Release.key"
  gpg --dearmor --yes -o "$keyring" /tmp/kubernetes-release.key
  rm -f /tmp/kubernetes-release.key
  printf 'deb [signed-by=%s] %s /\n' "$keyring" "$repo" >/etc/apt/sources.list.d/kubernetes.list
  apt_updated=false
  apt_install kubelet kubeadm kubectl
  apt-mark hold kubelet kubeadm kubectl >/dev/null
}

# The images of labvirt's image lock, pulled by digest before kubeadm or a
# lab asks for them by tag. On the control plane, says which of kubeadm's
# images the lock does not cover (a kubeadm of another patch release).
locked_images() {
  [[ -r "$LABVIRT_IMAGES_LOCK" ]] || return 0
  pull_locked_images
  [[ "$LABVIRT_ROLE" == control-plane ]] || return 0
  local image
  for image in $(kubeadm config images list --kubernetes-version "$(kubeadm version -o short)" 2>/dev/null); do
    [[ -n "$(locked_digest "$image")" ]] ||
      log "warning: $image is not in labvirt's image lock; it is pulled by tag"
  done
}

main() {
  load_cluster_env
  if [[ "$LABVIRT_GOLDEN_IMAGE" == true ]] && ! have "${GOLDEN_TOOLS[@]}"; then
    die "the golden image lacks one of ${GOLDEN_TOOLS[*]}: rebuild it with vm-templates/images/bake.sh"
  fi
  data_disk
  kernel_prerequisites
  guest_agent
  containerd_runtime
  kubernetes_packages
  containerd_config
  once locked-images locked_images
  systemctl enable kubelet
}

main "$@"
