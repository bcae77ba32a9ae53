package stream_test

import (
	"os/exec"
	"strings"
	"testing"
)

// What another team imports must not drag in the NATS server, Kubernetes,
// the Compose library or the OTLP exporters.
func TestPublicPackagesStayLight(t *testing.T) {
	t.Parallel()
	pkgs := []string{"./stream", "./consumers", "./enrich", "./spectora", "./admin", "./gateway", "./reconcile"}
	cmd := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"nats-server", "k8s.io", "compose-spec", "otlptrace", "spectora-stream/internal/embedded", "spectora-stream/internal/natstest"} {
			if strings.Contains(dep, banned) {
				t.Errorf("a public package depends on %s", dep)
			}
		}
	}
}
