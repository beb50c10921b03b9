#!/bin/bash
# Joins a worker to its env's control plane with labvirt's pre-shared
# bootstrap token and CA hash, retrying until the API answers, then writes the
# readiness marker once the node is Ready. Idempotent: cloud-init runs it on
# every boot.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

# The kubelet's own credentials: enough to read this node's status.
export KUBECONFIG=/etc/kubernetes/kubelet.conf

join_once() {
  local endpoint=$1
  if ! curl -ksf --max-time 5 "https://$endpoint:6443/readyz" >/dev/null; then
    log "the API at $endpoint:6443 does not answer yet"
    return 1
  fi
  if kubeadm join "$endpoint:6443" \
    --token "$LABVIRT_BOOTSTRAP_TOKEN" \
    --discovery-token-ca-cert-hash "$LABVIRT_CA_CERT_HASH" \
    --node-name "$LABVIRT_NODE_NAME"; then
    return 0
  fi
  log "kubeadm join failed; resetting for the next attempt"
  kubeadm reset -f >/dev/null 2>&1 || true
  return 1
}

main() {
  take_bootstrap_lock
  load_cluster_env
  env_node_access
  if is_ready; then
    log "already joined"
    return 0
  fi
  "$LABVIRT_LIB_DIR/install-kubernetes.sh"
  if [[ ! -e /etc/kubernetes/kubelet.conf ]]; then
    local endpoint
    endpoint=$(control_plane_fqdn)
    # The control plane boots at the same time and needs minutes for kubeadm
    # init: keep trying for as long as labvirt's provisioning deadline allows.
    retry_until_deadline 10 join_once "$endpoint" ||
      die "could not join $endpoint within the provisioning deadline (${LABVIRT_DEADLINE_SECONDS}s)"
  fi
  # Joined is not Ready: the marker waits until the node reports Ready (its
  # CNI is up). The control plane's marker waits for every node.
  retry_until_deadline 10 node_ready "$LABVIRT_NODE_NAME" ||
    die "node $LABVIRT_NODE_NAME did not become Ready within the provisioning deadline (${LABVIRT_DEADLINE_SECONDS}s)"
  mark_ready
}

main "$@"
