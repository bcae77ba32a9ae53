#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary used by the end-to-end tracing test
# from the Go module proxy (module pinned in tools/jaeger/go.mod, kept apart
# from the project's go.mod). Cold, this takes 3 to 11 minutes on 2 cores; the
# binary is cached, so later runs return at once. e2e/run calls it before the
# end-to-end suites; --path prints where the binary goes.
#   JAEGER_BIN (default ~/.cache/spectora-stream/jaeger-v1.76.0) is where it goes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1=="github.com/jaegertracing/jaeger" {print $2}' "$here/go.mod")"
bin="${JAEGER_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/spectora-stream/jaeger-${version}}"
if [ "${1:-}" = "--path" ]; then
  echo "$bin"   # where the binary is, or will be
  exit 0
fi
if [ -x "$bin" ]; then
  echo "jaeger ${version}: cached at $bin"
  exit 0
fi
mkdir -p "$(dirname "$bin")"
echo "jaeger ${version}: building $bin (3-11 minutes the first time)"
start=$(date +%s)
tmp="$bin.tmp.$$"   # concurrent builds never share a half-written file
# Static (no cgo), so the same binary runs in the FROM scratch image of
# deploy/compose/local-images.sh.
(cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv "$tmp" "$bin"
echo "jaeger ${version}: built in $(( $(date +%s) - start ))s"
