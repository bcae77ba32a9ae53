#!/usr/bin/env bash
# Replays the memory attacks of the hardening review against a gateway on
# the embedded JetStream, and prints its peak memory under each:
#   slow-unsigned  400 connections announcing 1,000,000 bytes without
#                  signature headers, 900 KB sent then a byte a second
#   slow-forged    the same with signature headers that could be genuine,
#                  with the per-address refusal limit off (the worst case:
#                  attackers on many addresses)
# then a genuine load for comparison. Run it on an idle machine:
#   bash scripts/attack.sh [seconds per attack, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/ss" ./cmd/spectora-stream
export SPECTORA_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
url=http://127.0.0.1:18080/webhooks/spectora

# peak_rss PID SECONDS: the highest VmRSS seen, in MiB, sampled every 250 ms.
peak_rss() {
  local pid=$1 end=$(( $(date +%s) + $2 )) peak=0 r
  while [ "$(date +%s)" -lt "$end" ]; do
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.25
  done
  echo $(( peak / 1024 ))
}

for mode in slow-unsigned slow-forged; do
  refused=10
  [ "$mode" = slow-forged ] && refused=0
  rm -rf "$work/data"
  REFUSED_RATE_LIMIT=$refused "$work/ss" gateway --http-addr 127.0.0.1:18080 --metrics-addr 127.0.0.1:19090 \
      --nats-listen off --nats-store-dir "$work/data" >"$work/gw.log" 2>&1 &
  pid=$!
  sleep 2
  rest=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status")
  "$work/ss" bench --mode "$mode" -c 400 -d "${secs}s" --spectora-gateway-url "$url" >"$work/$mode.out" 2>&1 &
  bench=$!
  peak=$(peak_rss "$pid" $(( secs + 2 )))
  wait "$bench" || true
  echo "$mode: gateway RSS $rest MiB at rest, peak $peak MiB under attack (REFUSED_RATE_LIMIT=$refused)"
  tail -1 "$work/$mode.out" | sed 's/^/    /'
  if [ "$mode" = slow-forged ]; then
    echo "    genuine webhooks right after:"
    "$work/ss" bench -c 64 -d 5s --spectora-gateway-url "$url" | tail -3 | sed 's/^/    /'
  fi
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
done
