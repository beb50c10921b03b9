#!/bin/bash
# Bakes a labvirt golden image: Ubuntu 22.04's cloud image with containerd,
# kubeadm/kubelet/kubectl of one Kubernetes minor version, qemu-guest-agent,
# Calico's manifest, and every image the control plane, Calico and the labs
# pull, pre-pulled into containerd, on a root disk large enough for them.
# cloud-init/install-kubernetes.sh then installs nothing (its GOLDEN_TOOLS
# list is BAKED_TOOLS here; a test keeps the two equal).
#
# Usage: vm-templates/images/bake.sh [--dry-run] [--lock FILE] MINOR BASE_IMAGE OUTPUT
#   MINOR       Kubernetes minor version, e.g. 1.31
#   BASE_IMAGE  Ubuntu 22.04 cloud image (jammy-server-cloudimg-amd64.img)
#   OUTPUT      the golden qcow2 to write (then: podman build -f Containerfile)
#   --lock      labvirt's image lock (default: images.lock.yaml next to this
#               script, when it exists): every image it lists is pulled by
#               its digest and tagged under its name, and kubeadm, kubelet and
#               kubectl are the patch release kubeadm-images.yaml names
# Needs Debian's libguestfs-tools (virt-customize) and qemu-utils, network
# access to the Ubuntu archive, pkgs.k8s.io, GitHub, quay.io, registry.k8s.io
# and Docker Hub (or a proxy: http_proxy/https_proxy are passed on). With
# --dry-run it prints the virt-customize steps instead of running them.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")


# What install-kubernetes.sh checks before it skips installing (GOLDEN_TOOLS).
readonly BAKED_TOOLS=(qemu-ga containerd runc kubeadm kubelet kubectl)
# Packages that bring them.
readonly PACKAGES=(qemu-guest-agent containerd kubeadm kubelet kubectl)
# Root disk of the golden image: the stock image has ~2 GiB; the pre-pulled
# images need about 1.5 GiB more, and the VM's data disk holds the rest.
readonly DISK_SIZE=12G
# Where control-plane.sh looks for Calico's manifest before downloading it.
readonly CALICO_VERSION=v3.29.3
readonly CALICO_CACHED=/usr/local/share/labvirt/calico-vxlan-$CALICO_VERSION.yaml
readonly CALICO_URL="https://raw.githubusercontent.com/projectcalico/calico/$CALICO_VERSION/manifests/calico-vxlan.yaml"

dry_run=false
lock=""
[[ -e "$here/images.lock.yaml" ]] && lock="$here/images.lock.yaml"
while (($# > 0)); do
  case "$1" in
    --dry-run) dry_run=true ;;
    --lock)
      (($# >= 2)) || { echo "--lock needs a file" >&2; exit 2; }
      lock=$2
      shift
      ;;
    *) break ;;
  esac
  shift
done
if (($# != 3)); then
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
fi
minor=$1 base=$2 output=$3
[[ "$minor" =~ ^1\.[0-9]{2}$ ]] || { echo "MINOR must look like 1.31, not '$minor'" >&2; exit 2; }

# Every image a lab's real scripts run (lab-images.txt, comments dropped).
lab_images() {
  grep -v -e '^#' -e '^[[:space:]]*$' "$here/lab-images.txt"
}

# The lock's entries as `<name> <digest>` lines; fails on a line of another shape.
lock_entries() {
  [[ -n "$lock" ]] || return 0
  local line
  while IFS= read -r line; do
    case "$line" in
      '' | '#'* | 'images:') continue ;;
    esac
    [[ "$line" =~ ^\ \ ([a-z0-9.:/_-]+:[A-Za-z0-9_.-]+):\ (sha256:[0-9a-f]{64})$ ]] ||
      { echo "$lock: unexpected line: $line" >&2; return 1; }
    printf '%s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  done <"$lock"
}

# The Kubernetes patch release kubeadm-images.yaml locks for MINOR (e.g. 1.31.10).
kubernetes_patch() {
  awk -v key="'$minor':" '
    $0 == key { found = 1; next }
    /^[^ #]/ { found = 0 }
    found && $1 == "kubernetes:" { sub(/^v/, "", $2); print $2; exit }
  ' "$here/kubeadm-images.yaml"
}

# The script run inside the image by virt-customize (as root, with network).
guest_script() {
  local entries patch="" packages=("${PACKAGES[@]}")
  entries=$(lock_entries) || return 1
  if [[ -n "$lock" ]]; then
    patch=$(kubernetes_patch)
    [[ -n "$patch" ]] || { echo "no Kubernetes $minor in $here/kubeadm-images.yaml" >&2; return 1; }
    packages=(qemu-guest-agent containerd "kubeadm=$patch-*" "kubelet=$patch-*" "kubectl=$patch-*")
  fi
  cat <<SCRIPT
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# labvirt's image lock (empty without one): <name> <digest> a line.
cat >/tmp/labvirt-images.lock <<'LOCK'
$entries
LOCK
# growpart exits 1 when there is nothing to grow.
growpart /dev/sda 1 || [ \$? -eq 1 ]
resize2fs /dev/sda1
install -m 0755 -d /etc/apt/keyrings
repo="https://pkgs.k8s.io/core:/stable:/v$minor/deb/"
curl -fsSL "\${repo}Release.key" | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
printf 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] %s /\n' "\$repo" >/etc/apt/sources.list.d/kubernetes.list
apt-get update -q
apt-get install -y -q --no-install-recommends $(printf '%q ' "${packages[@]}")
apt-mark hold kubeadm kubelet kubectl
for tool in ${BAKED_TOOLS[*]}; do command -v "\$tool" >/dev/null || { echo "missing \$tool" >&2; exit 1; }; done
install -d /usr/local/share/labvirt
curl -fsSL -o "$CALICO_CACHED" "$CALICO_URL"
# Pre-pull with a containerd of its own (no systemd in the appliance), into
# the k8s.io namespace the kubelet uses.
containerd >/var/log/labvirt-bake-containerd.log 2>&1 &
ctrd=\$!
for _ in \$(seq 1 30); do ctr version >/dev/null 2>&1 && break; sleep 1; done
images=\$(kubeadm config images list --kubernetes-version "\$(kubeadm version -o short)")
images+=\$'\n'\$(sed -nE 's#^[[:space:]]*image:[[:space:]]*(docker\.io/)?calico/#quay.io/calico/#p' "$CALICO_CACHED" | sort -u)
images+=\$'\n'"$(lab_images | tr '\n' ' ')"
for image in \$images; do
  case "\$image" in */*/*) ref=\$image ;; */*) ref=docker.io/\$image ;; *) ref=docker.io/library/\$image ;; esac
  digest=\$(awk -v name="\$ref" '\$1 == name { print \$2; exit }' /tmp/labvirt-images.lock)
  if [ -n "\$digest" ]; then
    # By the lock's digest, tagged under the name kubeadm and the labs ask for.
    ctr -n k8s.io images pull "\${ref%:*}@\$digest" >/dev/null
    ctr -n k8s.io images tag --force "\${ref%:*}@\$digest" "\$ref" >/dev/null
  else
    ctr -n k8s.io images pull "\$ref" >/dev/null
  fi
done
rm -f /tmp/labvirt-images.lock
kill "\$ctrd"
wait "\$ctrd" || true
# A fresh identity on every VM made from this image.
cloud-init clean --logs --seed
truncate -s 0 /etc/machine-id
SCRIPT
}

run() {
  if [[ "$dry_run" == true ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

if [[ "$dry_run" != true ]]; then
  command -v virt-customize >/dev/null || { echo "virt-customize is missing: apt-get install libguestfs-tools" >&2; exit 1; }
  command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
  [[ -r "$base" ]] || { echo "cannot read $base" >&2; exit 1; }
fi
script=$(mktemp)
trap 'rm -f "$script"' EXIT
guest_script >"$script" || exit 1
run qemu-img convert -O qcow2 "$base" "$output"
run qemu-img resize "$output" "$DISK_SIZE"
run virt-customize -a "$output" --network \
  --install cloud-guest-utils,curl,gpg,ca-certificates,openssl \
  --run "$script"
if [[ "$dry_run" == true ]]; then
  echo "# script run in the image:"
  cat "$script"
fi
echo "baked $output for Kubernetes $minor" >&2
