package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/mod/modfile"
)

// jaeger is the Jaeger v2 binary for the end-to-end tracing test, or why it
// could not be had.
var jaeger struct {
	bin string
	err error
}

// TestMain builds Jaeger (tools/jaeger/build.sh, cached after the first time)
// before the tests start, outside the test timeout: a cold build takes 3 to 11
// minutes. It is skipped when -run leaves the end-to-end test out.
func TestMain(m *testing.M) {
	flag.Parse()
	if wantsJaeger() {
		jaeger.bin, jaeger.err = ensureJaeger()
	}
	os.Exit(m.Run())
}

func wantsJaeger() bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	re, err := regexp.Compile(f.Value.String())
	return err != nil || re.MatchString("TestJaegerShowsOneTraceAcrossProcesses")
}

// ensureJaeger returns JAEGER_BIN, or the cached build of the version pinned
// in tools/jaeger/go.mod, building it first if it is missing.
func ensureJaeger() (string, error) {
	tools := filepath.Join("..", "..", "tools", "jaeger")
	bin := os.Getenv("JAEGER_BIN")
	if bin == "" {
		gomod, err := os.ReadFile(filepath.Join(tools, "go.mod"))
		if err != nil {
			return "", err
		}
		mf, err := modfile.Parse("go.mod", gomod, nil)
		if err != nil {
			return "", err
		}
		version := ""
		for _, r := range mf.Require {
			if r.Mod.Path == "github.com/jaegertracing/jaeger" {
				version = r.Mod.Version
			}
		}
		cache, err := os.UserCacheDir()
		if err != nil || version == "" {
			return "", errors.Join(errors.New("no Jaeger version in tools/jaeger/go.mod or no cache directory"), err)
		}
		bin = filepath.Join(cache, "spectora-stream", "jaeger-"+version)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "building Jaeger into %s for the end-to-end tracing test (3-11 minutes, once)\n", bin)
	cmd := exec.Command("bash", filepath.Join(tools, "build.sh"))
	cmd.Env = append(os.Environ(), "JAEGER_BIN="+bin)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return bin, fmt.Errorf("bash tools/jaeger/build.sh: %w", err)
	}
	return bin, nil
}
