// Package deploy holds the deployment files of spectora-stream: Kubernetes
// manifests (kustomize base, example overlay, a Jaeger example) and values for
// the official NATS Helm chart with least-privilege users. It has no code; its
// tests decode every manifest strictly into the upstream API types, check
// them and docker-compose.yml against the binary's settings, and start a NATS
// server with the Helm values' accounts to prove each user can do its job and
// nothing more.
package deploy
