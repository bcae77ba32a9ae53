// Package e2e holds the end-to-end suites: the compose stack on a
// three-node NATS cluster through faults, and traces across processes in a
// real Jaeger. They need Docker, Jaeger and built images, so they sit
// behind the e2e build tag, apart from the quick `go test ./...`:
//
//	bash e2e/run     # builds Jaeger and the local images, then runs them
//
// Without a Docker engine a suite skips with the reason; with
// SPECTORA_REQUIRE_E2E=1 (set by .ci/run) it fails instead.
package e2e
