#!/usr/bin/env bash
# `make demo`: a local control plane, Lowkey Vault (a Key Vault emulator), the CRDs and the
# operator; then the worked example of the README: back up two keys, a secret and a
# certificate, lose a key and the secret for good and delete the certificate, bring them back.
# `make demo-down`: stops everything this started, last started first.
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:?usage: demo.sh up|down DIR}"
dir="$(mkdir -p "${2:?usage: demo.sh up|down DIR}" && cd "$2" && pwd)"
python="${VENV:-.venv}/bin/python"  # the Makefile passes its VENV
export KUBECONFIG="$dir/control-plane/kubeconfig"
namespace=payments

down() {
  "$python" -m tests.harness.processes stop "$dir/operator.pid"
  "$python" -m tests.harness.lowkey down "$dir/lowkey"
  "$python" -m tests.harness.controlplane down "$dir/control-plane"
  echo "demo stopped"
}

vault() {  # the plain Azure SDK against the emulator (tests/harness/vault.py's commands)
  "$python" -m tests.harness.vault "$LOWKEY_VAULT_URL" "$KVBACKUP_CA_BUNDLE" "$@"
}

wait_ready() {  # $1: kind/name; on a timeout, shows why instead of only "timed out"
  if ! kubectl wait --for=condition=Ready "$1" -n "$namespace" --timeout=120s; then
    echo "== $1 is not Ready; its status, and the end of the operator's log:"
    kubectl get "$1" -n "$namespace" \
      -o jsonpath='{.status.phase}{"\n"}{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
    tail -n 20 "$dir/operator.log"
    echo
    look_around
    exit 1
  fi
}

results() {  # $1: a KeyRestore; a line per item of each kind, as its status lists them
  local kind
  for kind in keys secrets certificates; do
    kubectl get kr "$1" -n "$namespace" -o jsonpath="{range .status.$kind[*]}${kind%s} {.name}: {.result} {.reason}{\"\\n\"}{end}"
  done
}

look_around() {
  echo "Look around:  export KUBECONFIG=$KUBECONFIG PATH=$dir/bin:\$PATH"
  echo "              kubectl get kb,kr,secrets -n $namespace"
  echo "Stop it all:  make demo-down"
}

example() {  # an example manifest, pointed at the emulator instead of Azure
  sed "s#https://payments-prod.vault.azure.net#$LOWKEY_VAULT_URL#" "examples/$1"
}

up() {
  down >/dev/null 2>&1 || true
  rm -rf "$dir/control-plane" "$dir/lowkey"  # a fresh cluster and vault each time

  echo "== etcd and kube-apiserver (RBAC on), and the CRDs"
  "$python" -m tests.harness.controlplane up "$dir/control-plane" >/dev/null
  mkdir -p "$dir/bin"
  ln -sf "$(bash hack/build-control-plane.sh)/kubectl" "$dir/bin/kubectl"
  export PATH="$dir/bin:$PATH"

  echo "== Lowkey Vault, the Key Vault emulator"
  "$python" -m tests.harness.lowkey up "$dir/lowkey" >/dev/null
  set -a
  # shellcheck disable=SC1091
  source "$dir/lowkey/lowkey.env"
  set +a
  echo "vault: $LOWKEY_VAULT_URL"

  echo "== the operator (log: $dir/operator.log)"
  # The emulator listens on loopback, which the default host allow-list (Azure's domains
  # only) refuses: the demo allows it, as a user adds an emulator. No namespace may use the
  # operator's own identity unless a rule says so: the demo's namespace may, for its vault.
  KVBACKUP_VAULT_HOSTS='127.0.0.1:*' KVBACKUP_HEALTH_PORT=0 KVBACKUP_METRICS_PORT=0 KVBACKUP_RETRY_BASE_SECONDS=5 \
    KVBACKUP_DEFAULT_IDENTITY_RULES="[{\"namespaces\": [\"$namespace\"], \"vaultUrls\": [\"$LOWKEY_VAULT_URL\"]}]" \
    nohup "$python" -m kvbackup >"$dir/operator.log" 2>&1 &
  echo $! >"$dir/operator.pid"

  echo "== in the vault: keys card-signing (3 versions) and token-wrapping, secret db-password"
  echo "   (3 versions), certificate api-tls (self-signed)"
  key_before="$(vault create card-signing 3)"
  vault create token-wrapping 1 >/dev/null
  vault set-secret db-password s3cret-2024 s3cret-2025 s3cret-2026 >/dev/null
  secret_before="$(vault secret-values db-password)"
  certificate_before="$(vault create-certificate api-tls)"

  echo "== kubectl apply -f examples/keybackup.yaml, and wait until it is Ready"
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  example keybackup.yaml | kubectl apply -f -
  wait_ready kb/payments-keys
  kubectl get kb payments-keys -n "$namespace" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}{"\n"}'

  echo "== disaster: key card-signing and secret db-password are deleted and purged,"
  echo "   certificate api-tls is deleted"
  vault delete-and-purge card-signing
  vault delete-and-purge-secret db-password
  vault delete-certificate api-tls

  echo "== kubectl apply -f examples/keyrestore-dry-run.yaml: what would a restore do?"
  example keyrestore-dry-run.yaml | kubectl apply -f -
  wait_ready kr/payments-keys-preview
  results payments-keys-preview
  kubectl get kr payments-keys-preview -n "$namespace" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}{"\n"}'

  echo "== kubectl apply -f examples/keyrestore.yaml, and wait until it is Ready"
  example keyrestore.yaml | kubectl apply -f -
  wait_ready kr/payments-keys-restore

  echo "== kubectl get kb,kr -n $namespace"
  kubectl get kb,kr -n "$namespace"
  echo "== per-item results of the restore"
  results payments-keys-restore
  echo "== key card-signing's versions"
  echo "before: $key_before"
  echo "after:  $(vault versions card-signing)"
  echo "== secret db-password's versions and their values, read back"
  echo "before: $secret_before"
  echo "after:  $(vault secret-values db-password)"
  echo "== certificate api-tls's versions"
  echo "before: $certificate_before"
  echo "after:  $(vault certificate-versions api-tls)"
  echo
  look_around
}

"$command"
