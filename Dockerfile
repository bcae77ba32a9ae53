# syntax=docker/dockerfile:1
# spectora-stream: a static, non-root binary on distroless (CA certificates,
# tzdata, no shell). About 33 MB: the 30.6 MB binary (embedded NATS server,
# OpenTelemetry, gRPC) on the ~2 MB distroless static base.
#   docker build --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t spectora-stream .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/spectora-stream ./cmd/spectora-stream

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="spectora-stream" \
      org.opencontainers.image.description="Spectora webhooks into NATS JetStream: Svix-verifying gateway, consumer groups, tracing" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/spectora-stream /usr/local/bin/spectora-stream
USER nonroot:nonroot
EXPOSE 8080 9090 8090
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/spectora-stream", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/spectora-stream"]
CMD ["serve"]
