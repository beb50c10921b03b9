#!/bin/bash
# Proves labvirt's real path on the cluster of the current kubeconfig (a host
# with KubeVirt): the conformance suite against its API server, one env per
# flavor rendered and booted, every lab's REAL scripts through
# `labvirt labs test --real`, then a report. Nothing here has been run on a
# real cluster by the project yet (our machines have no image registry);
# --dry-run prints each step instead of running it, and runs in CI.
#
# Usage: hack/e2e-real.sh [--dry-run] [--config FILE] [--flavors "F ..."] [--out DIR] [LAB...]
#   --config FILE   labvirt configuration (default: $LABVIRT_CONFIG, else one
#                   written to DIR pointing kube.kubeconfig at $KUBECONFIG)
#   --flavors LIST  flavors to boot one env each (default: v1.30-3node v1.31-1node)
#   --out DIR       where the report and logs go (default: ./e2e-real-<time>)
#   LAB...          labs for `labvirt labs test --real` (default: every lab)
# Environment: KUBECONFIG (default ~/.kube/config), E2E_BOOT_TIMEOUT seconds
# per env (default 1800).
set -euo pipefail

repo=$(readlink -f "$(dirname "$(readlink -f "$0")")/..")
labvirt=("$repo/bin/labvirt.js")
dry_run=false
config=${LABVIRT_CONFIG:-}
flavors="v1.30-3node v1.31-1node"
out="./e2e-real-$(date -u +%Y%m%dT%H%M%SZ)"
kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
boot_timeout=${E2E_BOOT_TIMEOUT:-1800}
labs=()

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

while (($# > 0)); do
  case "$1" in
    --dry-run) dry_run=true ;;
    --config) config=${2:?--config needs a file}; shift ;;
    --flavors) flavors=${2:?--flavors needs a list}; shift ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h | --help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) labs+=("$1") ;;
  esac
  shift
done
for flavor in $flavors; do
  [[ "$flavor" =~ ^v1\.[0-9]{2}-[13]node$ ]] || { echo "not a flavor name: $flavor" >&2; exit 2; }
done

results=()
failed=0

# x COMMAND...: runs COMMAND, or with --dry-run prints it.
x() {
  if [[ "$dry_run" == true ]]; then
    printf '  +'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# step NAME COMMAND...: runs one step (with --dry-run: prints what it would
# run), logging to $out/NAME.log and recording PASS/FAIL with its duration.
step() {
  local name=$1
  shift
  if [[ "$dry_run" == true ]]; then
    echo "step $name"
    "$@"
    results+=("$name DRY-RUN 0s")
    return 0
  fi
  local start=$SECONDS status=PASS
  echo "== $name" >&2
  if ! "$@" >"$out/$name.log" 2>&1; then
    status=FAIL
    failed=$((failed + 1))
    tail -n 20 "$out/$name.log" >&2
  fi
  results+=("$name $status $((SECONDS - start))s")
}

# Boots one env of FLAVOR from `labvirt render`, waits until every VMI is
# Ready (qemu-guest-agent answers) and the student cluster inside is up (the
# control plane's bootstrap wrote its readiness marker), records the time,
# and deletes it.
boot_env() {
  local flavor=$1 env=$2 ns="lab-$2" ok=0
  if [[ "$dry_run" == true ]]; then
    x "${labvirt[@]}" --config "$config" render --flavor "$flavor" --env "$env"
  else
    "${labvirt[@]}" --config "$config" render --flavor "$flavor" --env "$env" >"$out/$env.yaml"
    # The Namespace is the first object; its name carries the configured prefix.
    ns=$(awk '/^kind: Namespace/ { found = 1 } found && /^  name:/ { print $2; exit }' "$out/$env.yaml")
  fi
  x kubectl apply -f "$out/$env.yaml"
  # KubeVirt creates the VMIs a moment after the VMs: `wait --all` on none fails.
  x retry_seconds 300 kubectl -n "$ns" get vmi control-plane || ok=$?
  x kubectl -n "$ns" wait vmi --all --for=condition=Ready --timeout="${boot_timeout}s" || ok=$?
  x retry_seconds "$boot_timeout" control_plane_ready "$ns" || ok=$?
  x kubectl -n "$ns" get vmi -o wide || true
  x kubectl delete namespace "$ns" --wait=true --timeout=600s || true
  return "$ok"
}

# control_plane_ready NAMESPACE: the control plane's bootstrap logged that it
# wrote the readiness marker (every node Ready, CoreDNS up). cloud-init's
# output reaches the serial console, which KubeVirt keeps in the launcher
# pod's guest-console-log container; no SSH into the env is needed.
control_plane_ready() {
  local pod
  pod=$(kubectl -n "$1" get pods -l kubevirt.io=virt-launcher,vm.kubevirt.io/name=control-plane -o name | head -n 1)
  [[ -n "$pod" ]] &&
    kubectl -n "$1" logs "$pod" -c guest-console-log 2>/dev/null | grep -q 'labvirt\[control-plane.sh\]: ready: wrote'
}

# retry_seconds SECONDS COMMAND...: runs COMMAND until it succeeds, for SECONDS at most.
retry_seconds() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 5
  done
}

write_config() {
  cat >"$1" <<CONFIG
# Written by hack/e2e-real.sh: labvirt against the current kubeconfig.
kube:
  kubeconfig: $kubeconfig
CONFIG
}

run_conformance() {
  x env -C "$repo" LABVIRT_E2E_KUBECONFIG="$kubeconfig" npx vitest run \
    test/sim/conformance-core.test.ts test/sim/admission.test.ts test/sim/validation.test.ts
}

if [[ "$dry_run" != true ]]; then
  command -v kubectl >/dev/null || { echo "kubectl is missing" >&2; exit 1; }
  [[ -r "$kubeconfig" ]] || { echo "cannot read the kubeconfig $kubeconfig" >&2; exit 1; }
  mkdir -p "$out"
fi
if [[ -z "$config" ]]; then
  config="$out/labvirt.yaml"
  [[ "$dry_run" == true ]] || write_config "$config"
fi

step cluster x kubectl --kubeconfig "$kubeconfig" get kubevirts.kubevirt.io --all-namespaces
step doctor x "${labvirt[@]}" --config "$config" doctor
step conformance run_conformance
n=0
for flavor in $flavors; do
  n=$((n + 1))
  step "boot-$flavor" boot_env "$flavor" "e2e$n$(date +%s | tail -c 5)"
done
step labs x "${labvirt[@]}" --config "$config" labs test --real --timeout "$boot_timeout" "${labs[@]}"

report=$(
  echo "# labvirt e2e on $(kubectl config current-context 2>/dev/null || echo "the current context")"
  echo
  echo "| step | result | time |"
  echo "| --- | --- | --- |"
  for r in "${results[@]}"; do
    read -r name status took <<<"$r"
    echo "| $name | $status | $took |"
  done
)
printf '%s\n' "$report"
if [[ "$dry_run" != true ]]; then
  printf '%s\n' "$report" >"$out/report.md"
  echo "report and logs: $out" >&2
fi
((failed == 0))
