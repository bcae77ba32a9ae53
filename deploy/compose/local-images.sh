#!/usr/bin/env bash
# Builds local stand-ins for every image in docker-compose.yml from what this
# machine reaches (the Go module proxy), for machines with a Docker engine but
# no image registry, and prints the variables that point compose at them:
#
#   export $(deploy/compose/local-images.sh)
#   docker compose up
#
# Each stand-in is FROM scratch: the program built from its Go module at the
# version the repository pins, plus a small wget-compatible probe so the
# compose health checks work with the official images and these alike.
#   SPECTORA_STREAM_IMAGE  the binary built here, packaged by the Dockerfile's
#                          "local" stage (static, non-root, CA certificates)
#   NATS_IMAGE             nats-server at the version in go.mod
#   JAEGER_IMAGE           Jaeger v2 from tools/jaeger: its query API works,
#                          but it has no web UI (the UI's assets need npm)
#   LB_IMAGE               Caddy from tools/caddy
# Images are tagged by what went into them and reused while that is the
# same, so a second run takes seconds. Progress goes to stderr; stdout holds
# only the assignments.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/spectora-stream/local-images"
mkdir -p "$cache"
export CGO_ENABLED=0
log() { echo "local-images: $*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
sum() { sha256sum "$@" | sha256sum | cut -c1-12; }

# build TAG CONTEXT [docker build args]: the legacy builder, quietly.
build() {
  local tag=$1 ctx=$2; shift 2
  log "building $tag"
  docker build -q -t "$tag" "$@" "$ctx" >&2
}

start=$(date +%s)
script_sum=$(sum "$0" "$root/deploy/compose/wget/main.go")

# The wget-compatible probe shared by the stand-ins.
probe="$cache/wget-$script_sum"
if [ ! -x "$probe" ]; then
  go build -C "$root/deploy" -trimpath -ldflags "-s -w" -o "$probe" ./compose/wget
fi

# stage NAME: a fresh context directory under the cache.
stage() { local d="$cache/ctx-$1"; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }

# spectora-stream: the binary built here, tagged by its own hash.
bin="$cache/spectora-stream"
(cd "$root" && go build -trimpath -ldflags "-s -w -X main.version=local" -o "$bin" ./cmd/spectora-stream)
app_tag="spectora-local/spectora-stream:$(sum "$bin" "$root/Dockerfile")"
if ! have "$app_tag"; then
  ctx=$(stage app)
  cp -a "$root/deploy/image/rootfs" "$root/deploy/image/state" "$ctx/"
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/ssl/certs"
  cp "$bin" "$ctx/rootfs/usr/local/bin/spectora-stream"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  build "$app_tag" "$ctx" -f "$root/Dockerfile" --target local --build-arg LOCAL=.
fi

# nats-server at the version the project pins.
nats_version=$(awk '$1=="github.com/nats-io/nats-server/v2" {print $2}' "$root/go.mod")
nats_tag="spectora-local/nats:${nats_version#v}-$script_sum"
if ! have "$nats_tag"; then
  ctx=$(stage nats)
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/usr/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
  log "compiling nats-server $nats_version"
  (cd "$root" && go build -trimpath -ldflags "-s -w" -o "$ctx/rootfs/usr/local/bin/nats-server" github.com/nats-io/nats-server/v2)
  cp "$probe" "$ctx/rootfs/usr/bin/wget"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin
EXPOSE 4222 6222 8222
CMD ["nats-server"]
DOCKERFILE
  build "$nats_tag" "$ctx"
fi

# Jaeger v2 (tools/jaeger/build.sh caches the binary).
jaeger_version=$(awk '$1=="github.com/jaegertracing/jaeger" {print $2}' "$root/tools/jaeger/go.mod")
jaeger_tag="spectora-local/jaeger:${jaeger_version#v}-$script_sum"
if ! have "$jaeger_tag"; then
  bash "$root/tools/jaeger/build.sh" >&2
  jaeger_bin="${JAEGER_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/spectora-stream/jaeger-${jaeger_version}}"
  ctx=$(stage jaeger)
  mkdir -p "$ctx/rootfs/cmd/jaeger" "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
  cp "$jaeger_bin" "$ctx/rootfs/cmd/jaeger/jaeger-linux"
  cp "$probe" "$ctx/rootfs/usr/bin/wget"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin JAEGER_LISTEN_HOST=0.0.0.0
EXPOSE 4317 4318 16686 13133
USER 10001
ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]
DOCKERFILE
  build "$jaeger_tag" "$ctx"
fi

# Caddy, the load balancer.
caddy_version=$(awk '$1=="github.com/caddyserver/caddy/v2" {print $2}' "$root/tools/caddy/go.mod")
caddy_tag="spectora-local/caddy:${caddy_version#v}-$script_sum"
if ! have "$caddy_tag"; then
  ctx=$(stage caddy)
  mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc/caddy" "$ctx/rootfs/config" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
  log "compiling caddy $caddy_version (minutes the first time)"
  go build -C "$root/tools/caddy" -trimpath -ldflags "-s -w" -o "$ctx/rootfs/usr/bin/caddy" github.com/caddyserver/caddy/v2/cmd/caddy
  cp "$probe" "$ctx/rootfs/usr/bin/wget"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
EXPOSE 8080
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
DOCKERFILE
  build "$caddy_tag" "$ctx"
fi

log "ready in $(( $(date +%s) - start ))s"
echo "SPECTORA_STREAM_IMAGE=$app_tag"
echo "NATS_IMAGE=$nats_tag"
echo "JAEGER_IMAGE=$jaeger_tag"
echo "LB_IMAGE=$caddy_tag"
