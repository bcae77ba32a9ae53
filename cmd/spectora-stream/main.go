// Command spectora-stream receives Spectora's Svix webhooks into NATS JetStream.
//
//	spectora-stream serve       gateway and consumer groups on the embedded JetStream (or NATS_URL)
//	spectora-stream gateway     the webhook gateway alone
//	spectora-stream consumers   the built-in consumer groups alone
//	spectora-stream events      print stored events, decoded
//	spectora-stream dlq         list, show, redrive and purge dead letters
//	spectora-stream replay      make a group reprocess history
//	spectora-stream console     the operations console alone (serve runs it too)
//	spectora-stream sim         a simulated Spectora: fake API and webhook sender
//	spectora-stream send        sign and post one webhook, to try the gateway
//	spectora-stream bench       load-test the gateway with signed webhooks
//
// Every setting is a flag and an environment variable of the same name
// (NATS_URL is --nats-url); `--help` on any command lists its own.
//
// Exit statuses: 0 done; 1 failed; 2 a usage or configuration error (a bad
// flag, variable or argument), reported in one line naming the setting;
// 3 `send` got an answer other than 2xx.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/spectora-stream/spectora-stream/internal/embedded"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// Exit statuses.
const (
	exitFailure = 1
	exitUsage   = 2
	exitNon2xx  = 3
)

type cli struct {
	Log     logFlags         `embed:"" prefix:"log-"`
	Version kong.VersionFlag `name:"version" help:"Print the version and exit."`

	Serve       serveCmd       `cmd:"" help:"Run the gateway and the built-in consumer groups on the embedded JetStream server, or on NATS_URL when set. The main job."`
	Gateway     gatewayCmd     `cmd:"" help:"Run the webhook gateway alone: verify Svix signatures and store each webhook in JetStream."`
	Consumers   consumersCmd   `cmd:"" help:"Run the built-in consumer groups alone (enricher, audit)."`
	Events      eventsCmd      `cmd:"" help:"Print stored events decoded: headers, envelope and body as JSON."`
	DLQ         dlqCmd         `cmd:"" name:"dlq" help:"Inspect and act on dead letters: list, show, redrive, purge."`
	Replay      replayCmd      `cmd:"" help:"Make a consumer group reprocess its stream from a time or a sequence."`
	Console     consoleCmd     `cmd:"" help:"Serve the operations console alone (ADMIN_ADDR): find events by record ID, see their records and traces, redrive dead letters, watch the groups."`
	Reconcile   reconcileCmd   `cmd:"" help:"Recover changes no webhook announced: list records changed since the checkpoints (or --since) from Spectora's API and publish the missed ones."`
	Sim         simCmd         `cmd:"" help:"Simulate Spectora: a fake API (JSON:API records) and a Svix-faithful webhook sender with retries."`
	Send        sendCmd        `cmd:"" help:"Sign one webhook with SPECTORA_WEBHOOK_SECRET through the svix library and POST it to the gateway."`
	Bench       benchCmd       `cmd:"" help:"Load-test the gateway with uniquely IDed, correctly signed webhooks (or replay attacks with --mode) and print rate and latency."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when a URL (by default the ops address's /readyz) answers 200; for container health checks."`
	VersionCmd  versionCmd     `cmd:"" name:"version" help:"Print the version."`
}

type logFlags struct {
	Level  string `name:"level" env:"LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn or error (${env})."`
	Format string `name:"format" env:"LOG_FORMAT" default:"auto" enum:"auto,json,text" help:"Log format: text on a terminal and JSON otherwise (auto), or json, or text (${env})."`
}

func (l logFlags) logger(w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: level}
	format := l.Format
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	// Lines logged inside a span carry its trace_id and span_id.
	if format == "text" {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println(buildVersion())
	return nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stderr))
}

// kongExit carries the status kong asks to exit with (after --help or
// --version) out of the parse, so runMain returns it instead of kong
// calling os.Exit.
type kongExit int

// runMain parses args, runs the command and returns the exit status.
func runMain(args []string, stderr *os.File) (status int) {
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			status = int(code)
		}
	}()
	var c cli
	parser, err := kong.New(&c,
		kong.Name("spectora-stream"),
		kong.Description("Receive Spectora's Svix webhooks into NATS JetStream, where consumer groups enrich and process them."),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": buildVersion()},
		kong.Exit(func(code int) { panic(kongExit(code)) }),
	)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, err)
		return exitFailure
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, usageLine(commandOf(parser, args), err))
		return exitUsage
	}
	logger := c.Log.logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(logger)
	return exitStatus(err, command(kctx), stderr)
}

// command is the command line's command, e.g. "dlq show".
func command(kctx *kong.Context) string {
	if kctx == nil {
		return ""
	}
	var words []string
	for _, w := range strings.Fields(kctx.Command()) {
		if !strings.HasPrefix(w, "<") {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

var (
	flagPrefix = regexp.MustCompile(`^--([a-z0-9-]+): `)
	fromEnvar  = regexp.MustCompile(` \(from envar [A-Z0-9_]+=.*\)$`)
	argPrefix  = regexp.MustCompile(`^<([a-z-]+)>: `)
)

// commandOf is the command args name, as far as they name one: the leading
// words that are commands and subcommands.
func commandOf(parser *kong.Kong, args []string) string {
	node := parser.Model.Node
	var words []string
	for _, a := range args {
		var next *kong.Node
		for _, child := range node.Children {
			if child.Type == kong.CommandNode && child.Name == a {
				next = child
			}
		}
		if next == nil {
			break
		}
		words = append(words, a)
		node = next
	}
	return strings.Join(words, " ")
}

// usageLine rewrites kong's parse error as one line naming the setting (the
// variable, which is what is set in production), the value and what is
// accepted, and where to read more.
func usageLine(cmd string, err error) string {
	msg := err.Error()
	if m := flagPrefix.FindStringSubmatch(msg); m != nil {
		setting := strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
		msg = setting + " (--" + m[1] + "): " + strings.TrimPrefix(msg, m[0])
	} else if m := argPrefix.FindStringSubmatch(msg); m != nil {
		msg = strings.ToUpper(m[1]) + ": " + strings.TrimPrefix(msg, m[0])
	} else if strings.HasPrefix(msg, "expected one of") {
		msg = "a command is needed: " + strings.TrimPrefix(msg, "expected one of ")
	}
	msg = fromEnvar.ReplaceAllString(msg, "")
	return "spectora-stream" + prefixed(cmd) + ": " + msg + "; see spectora-stream" + prefixed(cmd) + " --help"
}

func prefixed(cmd string) string {
	if cmd == "" {
		return ""
	}
	return " " + cmd
}

// exitStatus reports err and returns the status the process exits with.
func exitStatus(err error, cmd string, stderr io.Writer) int {
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		return 0
	case isUsage(err):
		_, _ = fmt.Fprintf(stderr, "spectora-stream%s: %s; see spectora-stream%s --help\n", prefixed(cmd), err, prefixed(cmd))
		return exitUsage
	}
	_, _ = fmt.Fprintf(stderr, "spectora-stream%s: %s\n", prefixed(cmd), err)
	var ec exitCode
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitFailure
}

// isUsage reports whether err is a usage or configuration error: a setting
// or argument with a value the program can't use.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) || errors.Is(err, natsx.ErrInvalidConfig) || errors.Is(err, embedded.ErrConfig)
}

// exitCode is an error that asks for a particular exit status, after the
// command's deferred clean-up has run.
type exitCode struct {
	code int
	err  error
}

func (e exitCode) Error() string { return e.err.Error() }
func (e exitCode) Unwrap() error { return e.err }

// usageError is a command-line mistake: a setting or argument the command
// can't use.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
