// Package deploy holds the deployment files of spectora-stream: Kubernetes
// manifests (kustomize base, example overlay, a Jaeger example), values for
// the official NATS Helm chart with least-privilege users, and the compose
// stack's configuration. It has no code; its tests decode every manifest
// strictly into the upstream API types and check them and
// docker-compose.yml against the binary's settings.
//
// It is a module of its own, so the Kubernetes and Compose libraries its
// tests use never enter the main module's graph. Run its tests with
// `go -C deploy test ./...`. The NATS accounts in nats/values.yaml are tested
// with a real server in the main module (internal/natsx).
package deploy
