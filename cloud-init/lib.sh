#!/bin/bash
# Helpers shared by labvirt's guest bootstrap scripts. Sourced, never run.
# cloud-init writes every script of cloud-init/ to /usr/local/lib/labvirt/
# and the env's settings to /etc/labvirt/cluster.env.
# shellcheck shell=bash

# shellcheck disable=SC2034 # used by the scripts that source this file
readonly LABVIRT_LIB_DIR=/usr/local/lib/labvirt
readonly LABVIRT_CLUSTER_ENV=/etc/labvirt/cluster.env
readonly LABVIRT_STATE_DIR=/var/lib/labvirt
# The readiness marker labvirt waits for over SSH (see .notes/CONTRACTS.md).
readonly LABVIRT_READY_MARKER=/var/lib/labvirt/ready

log() {
  printf '%s labvirt[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${0##*/}" "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

# Serialises bootstrap runs: cloud-init starts the role script from
# scripts/per-boot on every boot (the first included), and an operator may
# start it by hand.
take_bootstrap_lock() {
  exec 9>/run/labvirt-bootstrap.lock
  flock 9
}

load_cluster_env() {
  [[ -r "$LABVIRT_CLUSTER_ENV" ]] || die "$LABVIRT_CLUSTER_ENV is missing: was this VM created by labvirt?"
  # shellcheck disable=SC1090 # written by labvirt's renderer, values single-quoted
  . "$LABVIRT_CLUSTER_ENV"
  local var
  for var in LABVIRT_ROLE LABVIRT_NODE_NAME LABVIRT_ENV_NAMESPACE LABVIRT_K8S_MINOR \
    LABVIRT_GOLDEN_IMAGE LABVIRT_POD_CIDR LABVIRT_SERVICE_CIDR LABVIRT_CONTROL_PLANE_NAME \
    LABVIRT_EXPECTED_NODES LABVIRT_BOOTSTRAP_TOKEN LABVIRT_CA_CERT_HASH \
    LABVIRT_HOST_CLUSTER_DOMAIN LABVIRT_DEADLINE_SECONDS; do
    [[ -n "${!var:-}" ]] || die "$var is not set in $LABVIRT_CLUSTER_ENV"
  done
  # http_proxy, https_proxy and no_proxy for curl and kubeadm (vm.proxy).
  if [[ -r "$LABVIRT_PROXY_ENV" ]]; then
    # shellcheck disable=SC1090 # written by labvirt's renderer
    . "$LABVIRT_PROXY_ENV"
  fi
}

readonly LABVIRT_PROXY_ENV=/etc/labvirt/proxy.env
# Written at the first run of the bootstrap on this disk: the guest's retries
# end LABVIRT_DEADLINE_SECONDS after it, when labvirt stops waiting too.
LABVIRT_BOOTSTRAP_STARTED=/var/lib/labvirt/bootstrap-started

# seconds_left: what remains of the provisioning deadline (0 when past it).
seconds_left() {
  if [[ ! -s "$LABVIRT_BOOTSTRAP_STARTED" ]]; then
    mkdir -p "$(dirname "$LABVIRT_BOOTSTRAP_STARTED")"
    date +%s >"$LABVIRT_BOOTSTRAP_STARTED"
  fi
  local started left
  started=$(<"$LABVIRT_BOOTSTRAP_STARTED")
  left=$((started + LABVIRT_DEADLINE_SECONDS - $(date +%s)))
  ((left > 0)) || left=0
  printf '%s\n' "$left"
}

# retry_until_deadline INTERVAL COMMAND...: retry_for with what remains of the
# provisioning deadline.
retry_until_deadline() {
  retry_for "$(seconds_left)" "$@"
}

# retry_for SECONDS INTERVAL COMMAND...: runs COMMAND until it succeeds or
# SECONDS have passed (then fails).
retry_for() {
  local deadline=$(($(date +%s) + $1)) interval=$2
  shift 2
  until "$@"; do
    if (($(date +%s) >= deadline)); then
      return 1
    fi
    sleep "$interval"
  done
}

# once NAME COMMAND...: runs COMMAND unless it already succeeded on an earlier
# run (a reboot, a retry); the state file is written only on success.
once() {
  local name=$1
  shift
  local done_file="$LABVIRT_STATE_DIR/steps/$name.done"
  if [[ -e "$done_file" ]]; then
    log "$name: done on an earlier run"
    return 0
  fi
  log "$name: starting"
  "$@"
  mkdir -p "$LABVIRT_STATE_DIR/steps"
  : >"$done_file"
  log "$name: done"
}

# node_ready NAME: true when the Node NAME reports Ready (reads $KUBECONFIG).
node_ready() {
  local status
  status=$(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) || return 1
  [[ "$status" == True ]]
}

is_ready() {
  [[ -e "$LABVIRT_READY_MARKER" ]]
}

mark_ready() {
  mkdir -p "$LABVIRT_STATE_DIR"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$LABVIRT_READY_MARKER.tmp"
  mv "$LABVIRT_READY_MARKER.tmp" "$LABVIRT_READY_MARKER"
  log "ready: wrote $LABVIRT_READY_MARKER"
}

# The host cluster's DNS domain (network.hostClusterDomain in labvirt's
# config): guessing it from the DHCP search list breaks on images that rewrite
# resolv.conf.
host_cluster_domain() {
  printf '%s\n' "$LABVIRT_HOST_CLUSTER_DOMAIN"
}

# The control plane's name on the host cluster: its hostname under the env's
# headless `nodes` Service (control-plane.nodes), which the host's DNS answers
# with the control plane's virt-launcher pod IP, the guest's IP under bridge
# binding. A fully qualified name, because systemd-resolved applies search
# domains to single-label names only.
control_plane_fqdn() {
  printf '%s.%s.svc.%s\n' "$LABVIRT_CONTROL_PLANE_NAME" "$LABVIRT_ENV_NAMESPACE" "$(host_cluster_domain)"
}

# kubeadm_init_config ENDPOINT VERSION: prints the kubeadm configuration of
# the control plane (InitConfiguration, ClusterConfiguration and
# KubeletConfiguration) for `kubeadm init --config`.
kubeadm_init_config() {
  local endpoint=$1 version=$2 api=v1beta3
  # v1beta4 arrived in 1.31 (v1beta3 is deprecated there); the fields used
  # here are the same in both.
  if ((10#${LABVIRT_K8S_MINOR#1.} >= 31)); then
    api=v1beta4
  fi
  cat <<CONF
apiVersion: kubeadm.k8s.io/$api
kind: InitConfiguration
bootstrapTokens:
  - token: "$LABVIRT_BOOTSTRAP_TOKEN"
    description: "labvirt: the env's workers join with this token"
    # Never expires: a worker VM recreated later (a containerDisk starts
    # blank) must still be able to join. The token lives only in this env.
    ttl: "0s"
    usages: [signing, authentication]
    groups: ["system:bootstrappers:kubeadm:default-node-token"]
nodeRegistration:
  name: "$LABVIRT_NODE_NAME"
  criSocket: unix:///run/containerd/containerd.sock
  # Workers may have one vCPU; memory is at least 2 GiB (labvirt's config
  # refuses less), so kubeadm's memory check stays on.
  ignorePreflightErrors: [NumCPU]
---
apiVersion: kubeadm.k8s.io/$api
kind: ClusterConfiguration
kubernetesVersion: "$version"
# The DNS name, not the pod IP: workers reach the API through it, and it
# follows the VM when it comes back with a new IP.
controlPlaneEndpoint: "$endpoint:6443"
networking:
  podSubnet: "$LABVIRT_POD_CIDR"
  serviceSubnet: "$LABVIRT_SERVICE_CIDR"
apiServer:
  certSANs:
    - "$endpoint"
    - "$LABVIRT_CONTROL_PLANE_NAME.$LABVIRT_ENV_NAMESPACE.svc"
    - "$LABVIRT_NODE_NAME"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
# CoreDNS (dnsPolicy: Default) forwards to these resolvers, not to the host
# cluster's DNS in the guest's own resolv.conf. Workers get this setting from
# the cluster's kubelet-config and the file from cloud-init.
resolvConf: /etc/labvirt/upstream-resolv.conf
CONF
}

# calico_set_pool_cidr MANIFEST CIDR: prints Calico's manifest with its IPv4
# pool set to CIDR (the manifest ships that setting commented out); fails when
# the manifest does not have it in the expected shape.
calico_set_pool_cidr() {
  local manifest=$1 cidr=$2 out
  out=$(sed -E \
    -e 's|^([[:space:]]*)# - name: CALICO_IPV4POOL_CIDR$|\1- name: CALICO_IPV4POOL_CIDR|' \
    -e "s|^([[:space:]]*)#   value: \"192\\.168\\.0\\.0/16\"$|\\1  value: \"$cidr\"|" \
    "$manifest")
  grep -q -- "- name: CALICO_IPV4POOL_CIDR" <<<"$out" || return 1
  grep -q -- "value: \"$cidr\"" <<<"$out" || return 1
  printf '%s\n' "$out"
}

# calico_from_quay MANIFEST: prints Calico's manifest with its images pulled
# from quay.io, which has no anonymous pull limit (Docker Hub's is hit by the
# second env behind one NAT address).
calico_from_quay() {
  sed -E 's#(image:[[:space:]]*)(docker\.io/)?calico/#\1quay.io/calico/#' "$1"
}

# containerd_config_from_default PAUSE_IMAGE: prints `containerd config
# default` (stdin) with systemd cgroups, PAUSE_IMAGE as the sandbox image and
# registry hosts read from /etc/containerd/certs.d; fails when a setting is
# not where it is expected.
containerd_config_from_default() {
  local pause=$1 out
  out=$(sed -E \
    -e 's/SystemdCgroup = false/SystemdCgroup = true/' \
    -e "s#^([[:space:]]*sandbox_image = ).*#\\1\"$pause\"#" \
    -e '/\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]/,/^[[:space:]]*\[/ s#config_path = ""#config_path = "/etc/containerd/certs.d"#')
  grep -q 'SystemdCgroup = true' <<<"$out" || return 1
  grep -q "sandbox_image = \"$pause\"" <<<"$out" || return 1
  grep -q 'config_path = "/etc/containerd/certs.d"' <<<"$out" || return 1
  printf '%s\n' "$out"
}

# The env's student key (written root-only by cloud-init) and the resolver
# drop-in that makes the env's node names resolve; see env_node_access.
# (LABVIRT_GUEST_ROOT is unset on a VM; tests point it at a directory.)
readonly LABVIRT_STUDENT_KEY="${LABVIRT_GUEST_ROOT:-}/etc/labvirt/student-ssh.key"
readonly LABVIRT_NODE_DOMAIN_CONF="${LABVIRT_GUEST_ROOT:-}/etc/systemd/resolved.conf.d/labvirt-nodes.conf"
# The user who gets the key (a test may name another).
LABVIRT_STUDENT_USER=${LABVIRT_STUDENT_USER:-student}

# env_node_access: lets the student reach the env's other nodes by name
# (`ssh worker-1`, as the labs say): the resolver picks up labvirt's search
# domain for the env's nodes, and the student gets the env's own key in
# ~/.ssh (its public half is already in their authorized_keys on every node;
# /etc/ssh/ssh_known_hosts holds every node's host key). Safe on every boot: a
# key the student replaced is left alone.
env_node_access() {
  local domain home group
  if [[ -r "$LABVIRT_NODE_DOMAIN_CONF" ]]; then
    domain=$(sed -n 's/^Domains=//p' "$LABVIRT_NODE_DOMAIN_CONF")
    # Restarted only while it does not search the domain yet (the first boot).
    if [[ -n "$domain" ]] && ! resolvectl domain 2>/dev/null | grep -qwF -- "$domain"; then
      restart_resolver
    fi
  fi
  [[ -r "$LABVIRT_STUDENT_KEY" ]] || return 0
  home=$(getent passwd "$LABVIRT_STUDENT_USER" | cut -d: -f6)
  [[ -n "$home" ]] || die "user $LABVIRT_STUDENT_USER does not exist"
  group=$(id -gn "$LABVIRT_STUDENT_USER")
  install -d -o "$LABVIRT_STUDENT_USER" -g "$group" -m 0700 "$home/.ssh"
  if [[ ! -e "$home/.ssh/id_ed25519" ]]; then
    install -o "$LABVIRT_STUDENT_USER" -g "$group" -m 0600 "$LABVIRT_STUDENT_KEY" "$home/.ssh/id_ed25519"
    install -o "$LABVIRT_STUDENT_USER" -g "$group" -m 0644 "$LABVIRT_STUDENT_KEY.pub" "$home/.ssh/id_ed25519.pub"
  fi
}

# systemd-resolved reads its drop-ins when it starts: cloud-init wrote ours
# after it did. An image without systemd-resolved keeps its own resolver.
restart_resolver() {
  systemctl try-restart systemd-resolved ||
    log "warning: could not restart systemd-resolved; node names (ssh worker-1) may not resolve"
}

# The digests of the images this node pulls (labvirt's image lock), one
# `<registry>/<repository>:<tag> <digest>` a line; absent without a lock.
# (LABVIRT_GUEST_ROOT is unset on a VM; tests point it at a directory.)
readonly LABVIRT_IMAGES_LOCK="${LABVIRT_GUEST_ROOT:-}/etc/labvirt/images.lock"

# locked_digest NAME: the lock's digest of NAME (fully qualified, with its
# tag), or nothing.
locked_digest() {
  [[ -r "$LABVIRT_IMAGES_LOCK" ]] || return 0
  awk -v name="$1" '$1 == name { print $2; exit }' "$LABVIRT_IMAGES_LOCK"
}

# pin_manifest_images MANIFEST: prints MANIFEST with each `image: NAME` whose
# NAME the lock has written as `NAME@DIGEST` (the kubelet then pulls that
# digest); other lines unchanged. Names must be fully qualified, as Calico's
# are after calico_from_quay.
pin_manifest_images() {
  if [[ ! -r "$LABVIRT_IMAGES_LOCK" ]]; then
    cat "$1"
    return 0
  fi
  awk 'NR == FNR { if ($1 !~ /^#/ && NF == 2) pin[$1] = $2; next }
    /^[[:space:]-]*image:[[:space:]]*[^[:space:]]+[[:space:]]*$/ && ($NF in pin) {
      sub(/[[:space:]]+$/, ""); print $0 "@" pin[$NF]; next
    }
    { print }' "$LABVIRT_IMAGES_LOCK" "$1"
}

# pull_locked_images: pulls each image of the lock by its digest into the
# kubelet's containerd namespace (through the registry mirrors) and tags it
# under its name: kubeadm and the labs ask for NAME:TAG, and the kubelet
# (pull policy IfNotPresent) then runs the locked content.
pull_locked_images() {
  [[ -r "$LABVIRT_IMAGES_LOCK" ]] || return 0
  local name digest pinned
  while read -r name digest; do
    [[ -n "$name" && "$name" != \#* ]] || continue
    pinned="${name%:*}@$digest"
    retry_until_deadline 10 ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d "$pinned" \
      </dev/null >/dev/null || die "could not pull $pinned (the lock's digest of $name)"
    ctr -n k8s.io images tag --force "$pinned" "$name" </dev/null >/dev/null ||
      die "could not tag $pinned as $name"
  done <"$LABVIRT_IMAGES_LOCK"
}
