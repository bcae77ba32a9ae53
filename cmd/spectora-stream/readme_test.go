package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/natstest"
)

// The README's try-it path, run as a reader would: every command in its
// `console` blocks, in order, in a fresh directory, through bash, with the
// output compared to what the README shows.
//
// Conventions of those blocks:
//   - "$ cmd" is a command; the lines up to the next "$ " are its output
//     (stdout and stderr as they interleave).
//   - A command whose comment says "runs until Ctrl-C" runs in the
//     background; its output lines are waited for. Starting another with the
//     same program and subcommand interrupts the first (Ctrl-C, then the new
//     command in that terminal) and wants it to exit 0.
//   - In an output line "…" stands for any text; a line that is only "…"
//     for any number of lines. Timestamps, generated svix-ids and the
//     enriched stream's sequence numbers (enrichment runs concurrently) may
//     differ.
//   - "go build …" runs in the repository, writing into the directory.
//   - Read-only commands (listing, tail, wc…) are retried for a while until
//     the output matches, as the README says "a few seconds later".
//
// The default ports (8080, 9090, 4222, 8090) are swapped for free ones.
func TestREADMETryItPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the README's commands; skipped with -short")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README uses curl; install it (apt-get install curl)")
	}
	steps := readmeSteps(t, "../../README.md")
	if len(steps) < 10 {
		t.Fatalf("found %d commands in the README's console blocks", len(steps))
	}
	r := newReadmeRunner(t)
	defer r.stopAll()
	for _, s := range steps {
		t.Logf("$ %s", s.cmd)
		if s.background() {
			r.start(s)
			continue
		}
		r.run(s)
		if t.Failed() {
			return
		}
	}
}

type readmeStep struct {
	line int
	cmd  string
	want []string
}

func (s readmeStep) background() bool { return strings.Contains(s.cmd, "runs until Ctrl-C") }

// key names the program a background step runs: its first two words after
// any VAR=value assignments.
func (s readmeStep) key() string {
	var words []string
	for _, f := range strings.Fields(s.cmd) {
		if len(words) == 0 && strings.Contains(f, "=") {
			continue
		}
		words = append(words, f)
		if len(words) == 2 {
			break
		}
	}
	return strings.Join(words, " ")
}

func readmeSteps(t *testing.T, path string) []readmeStep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []readmeStep
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```console"):
			in = true
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in && strings.HasPrefix(line, "$ "):
			steps = append(steps, readmeStep{line: n, cmd: strings.TrimPrefix(line, "$ ")})
		case in && len(steps) > 0:
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	return steps
}

type readmeRunner struct {
	t        *testing.T
	dir      string
	repo     string
	env      []string
	ports    [][2]string // default, actual
	lastExit int
	bg       map[string]*bgProcess
}

type bgProcess struct {
	step readmeStep
	cmd  *exec.Cmd
	out  *natstest.Buffer
	done chan error
}

func newReadmeRunner(t *testing.T) *readmeRunner {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	r := &readmeRunner{t: t, dir: t.TempDir(), repo: repo, bg: map[string]*bgProcess{}}
	port := func(def string) string {
		_, p, _ := strings.Cut(natstest.FreeAddr(t), ":")
		r.ports = append(r.ports, [2]string{def, p})
		return p
	}
	gw, ops, nats, api, adm := port("8080"), port("9090"), port("4222"), port("8090"), port("8081")
	// The reader's environment without this project's settings, as a
	// terminal would be, with text logs as on a terminal.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !regexp.MustCompile(`^(SPECTORA|NATS|CONSUMER|SIM|HTTP|METRICS|OTEL|LOG|AUDIT|DLQ|RECORD|RATE|REFUSED|ADMIN|JAEGER)_`).MatchString(k) {
			r.env = append(r.env, kv)
		}
	}
	r.env = append(r.env, "LOG_FORMAT=text", "HTTP_ADDR=:"+gw, "METRICS_ADDR=127.0.0.1:"+ops,
		"NATS_LISTEN=127.0.0.1:"+nats, "SIM_API_ADDR=127.0.0.1:"+api, "ADMIN_ADDR=127.0.0.1:"+adm,
		"SPECTORA_GATEWAY_URL=http://127.0.0.1:"+gw+"/webhooks/spectora")
	return r
}

// command is the step's command as bash runs it here: the README's ports
// swapped for this test's, go commands writing into the directory.
func (r *readmeRunner) command(s readmeStep) *exec.Cmd {
	text := s.cmd
	for _, p := range r.ports {
		text = strings.ReplaceAll(text, ":"+p[0], ":"+p[1])
	}
	text = strings.ReplaceAll(text, "$?", strconv.Itoa(r.lastExit))
	cmd := exec.Command("bash", "-c", text)
	cmd.Dir, cmd.Env = r.dir, r.env
	if strings.HasPrefix(text, "go ") {
		cmd.Dir = r.repo
		cmd.Args[2] = strings.ReplaceAll(text, " -o bin/", " -o "+r.dir+"/bin/")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// normalize makes an output comparable: this test's ports back to the
// README's, and what differs from run to run fixed.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "2026-01-01T00:00:00Z"},
	{regexp.MustCompile(`msg_[0-9A-Za-z]{27}`), "msg_GENERATED"},
	{regexp.MustCompile(`SPECTORA_ENRICHED #\d+`), "SPECTORA_ENRICHED #N"},
}

func (r *readmeRunner) normalize(text string, actual bool) string {
	if actual {
		for _, p := range r.ports {
			text = strings.ReplaceAll(text, ":"+p[1], ":"+p[0])
		}
	}
	for _, v := range volatile {
		text = v.re.ReplaceAllString(text, v.with)
	}
	return text
}

// matches reports whether got (all lines) fits want, where "…" is any
// text and a "…" line any number of lines.
func (r *readmeRunner) matches(want []string, got string) bool {
	for len(want) > 0 && strings.TrimSpace(want[len(want)-1]) == "" {
		want = want[:len(want)-1] // a blank line before the block's next command
	}
	lines := strings.Split(strings.TrimRight(r.normalize(got, true), "\n"), "\n")
	if got == "" {
		lines = nil
	}
	pats := make([]*regexp.Regexp, len(want))
	for i, w := range want {
		w = strings.TrimRight(r.normalize(w, false), " ")
		parts := strings.Split(w, "…")
		for j := range parts {
			parts[j] = regexp.QuoteMeta(parts[j])
		}
		pats[i] = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i == len(want) {
			return j == len(lines)
		}
		if strings.TrimSpace(want[i]) == "…" {
			for k := j; k <= len(lines); k++ {
				if match(i+1, k) {
					return true
				}
			}
			return false
		}
		return j < len(lines) && pats[i].MatchString(strings.TrimRight(lines[j], " ")) && match(i+1, j+1)
	}
	return match(0, 0)
}

var readOnly = regexp.MustCompile(`^(bin/spectora-stream (dlq list|events)|wc |tail |grep )`)

func (r *readmeRunner) run(s readmeStep) {
	t := r.t
	if strings.HasPrefix(s.cmd, "export ") {
		r.env = append(r.env, strings.Fields(strings.TrimPrefix(s.cmd, "export "))...)
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	if strings.HasPrefix(s.cmd, "go ") {
		deadline = time.Now() // a build is not retried
	}
	for {
		cmd := r.command(s)
		var out natstest.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := runBounded(ctx, cmd)
		cancel()
		r.lastExit = cmd.ProcessState.ExitCode()
		if r.matches(s.want, out.String()) {
			return
		}
		if !readOnly.MatchString(s.cmd) || time.Now().After(deadline) {
			t.Errorf("README.md:%d: $ %s\nexit %d (%v); output:\n%s\nwant:\n%s", s.line, s.cmd, r.lastExit, err,
				out.String(), strings.Join(s.want, "\n"))
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func runBounded(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("killed after %s", 5*time.Minute)
	}
}

// start runs a background step, first interrupting the one it replaces,
// and waits for the output the README shows.
func (r *readmeRunner) start(s readmeStep) {
	t := r.t
	if prev := r.bg[s.key()]; prev != nil {
		r.interrupt(prev)
	}
	p := &bgProcess{step: s, cmd: r.command(s), out: &natstest.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	r.bg[s.key()] = p
	want := append(append([]string(nil), s.want...), "…")
	deadline := time.Now().Add(30 * time.Second)
	for !r.matches(want, p.out.String()) {
		select {
		case err := <-p.done:
			t.Fatalf("README.md:%d: $ %s\nexited: %v; output:\n%s", s.line, s.cmd, err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("README.md:%d: $ %s\noutput after 30s:\n%s\nwant:\n%s", s.line, s.cmd, p.out.String(), strings.Join(s.want, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt is Ctrl-C: SIGINT to the process group, and a clean exit.
func (r *readmeRunner) interrupt(p *bgProcess) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-p.done:
		if err != nil {
			r.t.Errorf("README.md:%d: $ %s\nexited after Ctrl-C with %v; output:\n%s", p.step.line, p.step.cmd, err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		r.t.Errorf("README.md:%d: $ %s\nstill running 30s after Ctrl-C", p.step.line, p.step.cmd)
	}
	delete(r.bg, p.step.key())
}

func (r *readmeRunner) stopAll() {
	for _, p := range r.bg {
		r.interrupt(p)
	}
}
