package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// root is the repository root, relative to this package.
const root = ".."

var (
	binOnce  sync.Once
	binPath  string
	binErr   error
	envCache = map[string]map[string]bool{}
	envMu    sync.Mutex
)

// binary builds spectora-stream once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "spectora-deploy-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "spectora-stream")
		// The binary is in the main module, one directory up.
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/spectora-stream")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = &buildError{err: err, out: string(out)}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

var envInHelp = regexp.MustCompile(`\(([A-Z][A-Z0-9_]+)\)`)

// commandEnv lists the environment variables a spectora-stream command reads,
// from its own --help (every flag names its variable).
func commandEnv(t *testing.T, command string) map[string]bool {
	t.Helper()
	envMu.Lock()
	defer envMu.Unlock()
	if env, ok := envCache[command]; ok {
		return env
	}
	out, err := exec.Command(binary(t), command, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", command, err, out)
	}
	env := map[string]bool{}
	for _, m := range envInHelp.FindAllStringSubmatch(string(out), -1) {
		env[m[1]] = true
	}
	if len(env) < 3 {
		t.Fatalf("%s --help names only %v", command, env)
	}
	envCache[command] = env
	return env
}

// knownEnv reports whether command reads name: one of its flags, or an
// OpenTelemetry SDK variable (read by the SDK, not a flag).
func knownEnv(t *testing.T, command, name string) bool {
	// OTEL_* are read by the OpenTelemetry SDK, GOMEMLIMIT by the Go runtime.
	return strings.HasPrefix(name, "OTEL_") || name == "GOMEMLIMIT" || commandEnv(t, command)[name]
}
