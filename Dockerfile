# spectora-stream: a static, non-root binary on distroless (CA certificates,
# tzdata, no shell). About 33 MB: the 30.6 MB binary (embedded NATS server,
# OpenTelemetry, gRPC) on the ~2 MB distroless static base.
#   docker build --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t spectora-stream .
#
# No "# syntax=" line: it would make BuildKit pull a frontend image, which
# an air-gapped machine can't.

# local: the same binary built on the host, for machines that can't pull the
# golang and distroless images. deploy/compose/local-images.sh makes the
# context (LOCAL/rootfs: the binary, CA certificates, passwd) and builds
# --target local. It comes first because the legacy builder builds every
# stage before its target; by default it only copies the passwd files.
FROM scratch AS local
ARG LOCAL=deploy/image
COPY ${LOCAL}/rootfs/ /
# Named volumes take the mount point's owner: the audit log and the embedded
# store are written by the non-root user.
COPY --chown=65532:65532 ${LOCAL}/state /var/lib/spectora
WORKDIR /var/lib/spectora
USER 65532:65532
EXPOSE 8080 9090 8090
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/spectora-stream", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/spectora-stream"]
CMD ["serve"]

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/spectora-stream ./cmd/spectora-stream && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS release
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="spectora-stream" \
      org.opencontainers.image.description="Spectora webhooks into NATS JetStream: Svix-verifying gateway, consumer groups, tracing" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/spectora-stream /usr/local/bin/spectora-stream
# Named volumes take the mount point's owner: the audit log and the embedded
# store are written by the non-root user.
COPY --from=build --chown=65532:65532 /out/data /var/lib/spectora
WORKDIR /var/lib/spectora
USER nonroot:nonroot
EXPOSE 8080 9090 8090
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/spectora-stream", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/spectora-stream"]
CMD ["serve"]
