# shellcheck shell=bash
# Sourced by the hack scripts (which run under set -e). A long first-time step says what it builds and roughly how
# long that takes, then a line every minute while it runs, and how long it took; its
# chatter (stderr) goes to a log that is shown, in its last lines, only if it fails.
# Its stdout is left alone: the scripts print paths there for their callers.
#
#   long_step "building etcd v3.6.16" "about 2 minutes" LOGFILE command [args...]
long_step() {
  local what="$1" estimate="$2" log="$3"
  shift 3
  local started parent=$$ ticker status=0
  started="$(date +%s)"
  mkdir -p "$(dirname "$log")"
  echo "$what: first time only, $estimate (log: $log)" >&2
  # The ticker holds no stdout (a caller reading the step's stdout waits for its end), and
  # takes its sleep with it when stopped, so that nothing outlives the step.
  (
    nap=""
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while kill -0 "$parent" 2>/dev/null; do
      sleep 60 &
      nap=$!
      wait "$nap"
      echo "  ... still $what, $(( ($(date +%s) - started) / 60 )) min so far" >&2
    done
  ) >/dev/null &
  ticker=$!
  # In a subshell of its own, not on the left of ||, so that set -e still stops the step
  # at its first failing command.
  set +e
  (set -e; "$@") 2>"$log"
  status=$?
  set -e
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  local took=$(( $(date +%s) - started ))
  if [ "$status" -ne 0 ]; then
    tail -n 25 "$log" >&2
    echo "$what failed after $(( took / 60 ))m$(( took % 60 ))s; full log: $log" >&2
    return "$status"
  fi
  echo "$what: done in $(( took / 60 ))m$(( took % 60 ))s" >&2
}
