# syntax=docker/dockerfile:1
# Multi-stage build: a static, non-root spectora-stream binary on distroless
# (CA certificates included, no shell).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/spectora-stream ./cmd/spectora-stream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spectora-stream /usr/local/bin/spectora-stream
USER nonroot:nonroot
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/spectora-stream", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/spectora-stream"]
CMD ["serve"]
