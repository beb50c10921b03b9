#!/bin/bash
# Bootstraps the control plane: kubeadm init with labvirt's CA and bootstrap
# token, Calico (which enforces NetworkPolicy), then waits until every node of
# the env is Ready and writes the readiness marker. Idempotent: cloud-init runs
# it on every boot, and each step checks whether it is already done.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

# Pinned CNI. A golden image may carry the manifest at $CALICO_CACHED so no
# download is needed at boot.
readonly CALICO_VERSION=v3.29.3
readonly CALICO_URL="https://raw.githubusercontent.com/projectcalico/calico/$CALICO_VERSION/manifests/calico-vxlan.yaml"
readonly CALICO_CACHED="/usr/local/share/labvirt/calico-vxlan-$CALICO_VERSION.yaml"

readonly KUBEADM_CONFIG=/etc/labvirt/kubeadm-init.yaml
# Written once `kubeadm init` has finished: admin.conf alone is not proof, as
# init writes it early, long before the bootstrap token exists.
readonly INIT_DONE=/var/lib/labvirt/steps/kubeadm-init.done
readonly PKI_BACKUP=/etc/labvirt/pki
export KUBECONFIG=/etc/kubernetes/admin.conf

# kubeadm reset wipes /etc/kubernetes/pki; keep labvirt's CA (written there by
# cloud-init) so a retried init still uses it and the workers' CA hash holds.
keep_ca() {
  install -d -m 0700 "$PKI_BACKUP"
  local f
  for f in ca.crt ca.key; do
    if [[ -s "/etc/kubernetes/pki/$f" && ! -s "$PKI_BACKUP/$f" ]]; then
      install -m 0600 "/etc/kubernetes/pki/$f" "$PKI_BACKUP/$f"
    fi
    if [[ ! -s "/etc/kubernetes/pki/$f" ]]; then
      [[ -s "$PKI_BACKUP/$f" ]] || die "labvirt's CA ($f) is missing"
      install -d -m 0755 /etc/kubernetes/pki
      install -m 0600 "$PKI_BACKUP/$f" "/etc/kubernetes/pki/$f"
    fi
  done
}

write_kubeadm_config() {
  local endpoint=$1
  install -d -m 0700 /etc/labvirt
  (
    umask 077
    kubeadm_init_config "$endpoint" "$(kubeadm version -o short)" >"$KUBEADM_CONFIG"
  )
}

kubeadm_init() {
  local endpoint
  endpoint=$(control_plane_fqdn)
  # The headless Service publishes the IP before the VM is Ready; until DNS
  # has it, init would time out talking to itself.
  retry_until_deadline 5 getent hosts "$endpoint" >/dev/null || die "$endpoint does not resolve"
  write_kubeadm_config "$endpoint"
  if ! kubeadm init --config "$KUBEADM_CONFIG"; then
    log "kubeadm init failed; resetting for the next attempt"
    reset_control_plane
    return 1
  fi
  install -d -m 0755 "$(dirname "$INIT_DONE")"
  : >"$INIT_DONE"
}

# Undoes a failed or interrupted init, keeping labvirt's CA for the next one.
reset_control_plane() {
  kubeadm reset -f || true
  keep_ca
}

api_answers() {
  kubectl get --raw /readyz >/dev/null 2>&1
}

user_kubeconfigs() {
  local user home group
  for user in student labvirt; do
    home=$(getent passwd "$user" | cut -d: -f6) || continue
    group=$(id -gn "$user")
    install -d -o "$user" -g "$group" -m 0700 "$home/.kube"
    if [[ ! -e "$home/.kube/config" ]]; then
      install -o "$user" -g "$group" -m 0600 /etc/kubernetes/admin.conf "$home/.kube/config"
    fi
  done
}

fetch_calico() {
  local out=$1
  if [[ -s "$CALICO_CACHED" ]]; then
    cp "$CALICO_CACHED" "$out"
    return 0
  fi
  retry_until_deadline 10 curl -fsSL --max-time 120 -o "$out" "$CALICO_URL" ||
    die "could not download $CALICO_URL"
}

install_cni() {
  local manifest=/etc/labvirt/calico.yaml
  if [[ ! -s "$manifest" ]]; then
    fetch_calico "$manifest.download"
    calico_from_quay "$manifest.download" >"$manifest.quay"
    # The digests of labvirt's image lock, when it has Calico's images.
    pin_manifest_images "$manifest.quay" >"$manifest.pinned"
    calico_set_pool_cidr "$manifest.pinned" "$LABVIRT_POD_CIDR" >"$manifest.tmp" ||
      die "could not set the pod CIDR in Calico's manifest ($CALICO_VERSION)"
    mv "$manifest.tmp" "$manifest"
    rm -f "$manifest.download" "$manifest.quay" "$manifest.pinned"
  fi
  # Server-side apply: Calico's CRDs are too big for the last-applied annotation.
  retry_until_deadline 10 kubectl apply --server-side --force-conflicts -f "$manifest" >/dev/null ||
    die "could not apply Calico"
}

# A one-node cluster must run the students' workloads on its control plane.
allow_workloads_on_control_plane() {
  if kubectl get node "$LABVIRT_NODE_NAME" -o jsonpath='{.spec.taints[*].key}' |
    grep -q 'node-role.kubernetes.io/control-plane'; then
    kubectl taint node "$LABVIRT_NODE_NAME" node-role.kubernetes.io/control-plane:NoSchedule-
  fi
}

ready_node_count() {
  kubectl get nodes --no-headers 2>/dev/null | awk '$2 ~ /^Ready/ { n++ } END { print n + 0 }'
}

all_nodes_ready() {
  local ready
  ready=$(ready_node_count)
  log "$ready of $LABVIRT_EXPECTED_NODES nodes Ready"
  ((ready >= LABVIRT_EXPECTED_NODES))
}

main() {
  take_bootstrap_lock
  load_cluster_env
  env_node_access
  if is_ready; then
    log "already bootstrapped"
    return 0
  fi
  "$LABVIRT_LIB_DIR/install-kubernetes.sh"
  keep_ca
  if [[ ! -e "$INIT_DONE" ]]; then
    if [[ -e /etc/kubernetes/admin.conf ]]; then
      # A reboot (or a crash) in the middle of kubeadm init: start it over.
      log "an earlier kubeadm init did not finish; resetting"
      reset_control_plane
    fi
    retry_until_deadline 15 kubeadm_init || die "kubeadm init kept failing"
  fi
  retry_until_deadline 5 api_answers || die "the API server does not answer"
  user_kubeconfigs
  once cni install_cni
  if ((LABVIRT_EXPECTED_NODES == 1)); then
    once untaint allow_workloads_on_control_plane
  fi
  retry_until_deadline 10 all_nodes_ready ||
    die "not every node became Ready within the provisioning deadline (${LABVIRT_DEADLINE_SECONDS}s)"
  retry_until_deadline 10 kubectl -n kube-system rollout status deployment/coredns --timeout=60s ||
    die "CoreDNS did not become available"
  mark_ready
}

main "$@"
