#!/usr/bin/env bash
# `make demo`: a local control plane, the CRDs, the operator, and the example objects.
# `make demo-down`: stops what this started.
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:?usage: demo.sh up|down DIR}"
dir="$(mkdir -p "${2:?usage: demo.sh up|down DIR}" && cd "$2" && pwd)"
python=".venv/bin/python"
kubectl="$(bash hack/build-control-plane.sh)/kubectl"
export KUBECONFIG="$dir/control-plane/kubeconfig"

down() {
  if [ -f "$dir/operator.pid" ]; then
    kill "$(cat "$dir/operator.pid")" 2>/dev/null || true
    rm -f "$dir/operator.pid"
  fi
  "$python" -m tests.harness.controlplane down "$dir/control-plane"
  echo "demo stopped"
}

up() {
  down >/dev/null 2>&1 || true
  rm -rf "$dir/control-plane"  # a fresh cluster each time
  echo "== starting etcd and kube-apiserver (RBAC on) and installing the CRDs"
  "$python" -m tests.harness.controlplane up "$dir/control-plane" >/dev/null

  echo "== Key Vault emulator"
  vault_url="https://127.0.0.1:8443"
  if jar="$(bash hack/fetch-lowkey-vault.sh)"; then
    echo "Lowkey Vault jar: $jar"
  else
    echo "Lowkey Vault is not available on this machine (see above); the demo shows how the"
    echo "operator reports a vault it cannot reach instead of a completed backup."
  fi

  echo "== starting the operator (log: $dir/operator.log)"
  # Keep azure-identity's managed-identity probe on loopback: no traffic leaves the machine.
  AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential \
  IDENTITY_ENDPOINT="http://127.0.0.1:8080/metadata/identity/oauth2/token" IDENTITY_HEADER=demo \
  KVBACKUP_HEALTH_PORT=0 KVBACKUP_RETRY_BASE_SECONDS=5 \
    nohup "$python" -m kvbackup >"$dir/operator.log" 2>&1 &
  echo $! >"$dir/operator.pid"

  echo "== applying examples/keybackup.yaml and examples/keyrestore.yaml in namespace demo"
  "$kubectl" create namespace demo --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  for example in examples/keybackup.yaml examples/keyrestore.yaml; do
    sed "s#https://payments-prod.vault.azure.net#$vault_url#" "$example" \
      | "$kubectl" apply -n demo -f -
  done
  sleep 20
  echo "== kubectl get kb,kr -n demo"
  "$kubectl" get kb,kr -n demo
  echo "== Ready conditions"
  "$kubectl" get kb,kr -n demo \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}: {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}'
  echo "== events"
  "$kubectl" get events -n demo --sort-by=.lastTimestamp | tail -5
  echo
  echo "KUBECONFIG=$KUBECONFIG $kubectl get kb,kr -n demo   # look around"
  echo "make demo-down                                        # stop everything"
}

"$command"
