# Shared by scripts/bench-* and scripts/soak (Linux: they read /proc);
# sourced from the repository's root, never run. Gives: $out (.cache/bench, where binaries are built),
# $work (a temporary directory removed at exit), pids+=(…) for processes
# to kill at exit, wait_ready, cpu, rss and machine.
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
# Benchmarks measure the pipeline, not an exporter, and use their own NATS,
# fake API and sources: settings from the caller's shell that would change
# those are dropped. Settings that tune what is measured (CONSUMER_CONCURRENCY,
# NATS_DUPLICATE_WINDOW, …) pass through.
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT NATS_URL NATS_LISTEN NATS_STORE_DIR \
  SPECTORA_API_TOKEN SPECTORA_API_SOURCES SPECTORA_API_URL SPECTORA_API_PATHS SPECTORA_WEBHOOK_SOURCES \
  SPECTORA_TYPE_FIELDS SPECTORA_ID_FIELDS CONSUMER_GROUPS RATE_LIMIT REFUSED_RATE_LIMIT PPROF_ADDR AUDIT_LOG

# wait_ready url [log]: poll url for 30 s; show the log's tail if it never answers.
wait_ready() {
  for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "not ready after 30 s: $1" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  return 1
}

# cpu pid: CPU seconds the process used so far (user + system).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# rss pid: resident memory in MiB.
rss() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# machine: the CPUs the numbers were measured on.
machine() { echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"; }
