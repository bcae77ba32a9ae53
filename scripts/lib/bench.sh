# Shared by scripts/bench-* and scripts/soak; sourced from the repository's
# root, never run. Gives: $out (.cache/bench, where binaries are built),
# $work (a temporary directory removed at exit), pids+=(…) for processes
# to kill at exit, wait_ready, rss and machine.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
out=.cache/bench
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Benchmarks measure the pipeline, not an exporter, and use their own NATS.
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT NATS_URL

# wait_ready url [log]: poll url for 30 s; show the log's tail if it never answers.
wait_ready() {
  for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "not ready after 30 s: $1" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  return 1
}

# rss pid: resident memory in MiB.
rss() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# machine: the CPUs the numbers were measured on.
machine() { echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"; }
