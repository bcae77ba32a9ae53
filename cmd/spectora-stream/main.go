// Command spectora-stream receives Spectora's Svix webhooks into NATS JetStream.
//
//	spectora-stream serve       gateway and consumer groups on the embedded JetStream (or NATS_URL)
//	spectora-stream gateway     the webhook gateway alone
//	spectora-stream consumers   the built-in consumer groups alone
//	spectora-stream dlq         list, show, redrive and purge dead letters
//	spectora-stream replay      make a group reprocess history
//	spectora-stream sim         a simulated Spectora: fake API and webhook sender
//	spectora-stream send        sign and post one webhook, to try the gateway
//	spectora-stream bench       load-test the gateway with signed webhooks
//
// Every setting is a flag and an environment variable; `--help` on any command
// lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/spectora-stream/spectora-stream/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

type cli struct {
	Log logFlags `embed:"" prefix:"log-"`

	Serve       serveCmd       `cmd:"" help:"Run the gateway and the built-in consumer groups on the embedded JetStream server, or on NATS_URL when set. The main job."`
	Gateway     gatewayCmd     `cmd:"" help:"Run the webhook gateway alone: verify Svix signatures and store each webhook in JetStream."`
	Consumers   consumersCmd   `cmd:"" help:"Run the built-in consumer groups alone (enricher, audit)."`
	DLQ         dlqCmd         `cmd:"" name:"dlq" help:"Inspect and act on dead letters: list, show, redrive, purge."`
	Replay      replayCmd      `cmd:"" help:"Make a consumer group reprocess its stream from a time or a sequence."`
	Sim         simCmd         `cmd:"" help:"Simulate Spectora: a fake API (JSON:API records) and a Svix-faithful webhook sender with retries."`
	Send        sendCmd        `cmd:"" help:"Sign one webhook with SPECTORA_WEBHOOK_SECRET through the svix library and POST it to the gateway."`
	Bench       benchCmd       `cmd:"" help:"Load-test the gateway with uniquely IDed, correctly signed webhooks and print rate and latency."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when a URL (by default the ops address's /readyz) answers 200; for container health checks."`
	Version     versionCmd     `cmd:"" help:"Print the version."`
}

type logFlags struct {
	Level  string `name:"level" env:"LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn or error (${env})."`
	Format string `name:"format" env:"LOG_FORMAT" default:"json" enum:"json,text" help:"Log format: json or text (${env})."`
}

func (l logFlags) logger() *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: level}
	// Lines logged inside a span carry its trace_id and span_id.
	if l.Format == "text" {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(os.Stderr, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, opts)))
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
	var c cli
	kctx := kong.Parse(&c,
		kong.Name("spectora-stream"),
		kong.Description("Receive Spectora's Svix webhooks into NATS JetStream, where consumer groups enrich and process them."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	logger := c.Log.logger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err := kctx.Run(logger)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "spectora-stream %s: %s\n", strings.Fields(kctx.Command())[0], err)
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		os.Exit(1)
	}
}

// exitCode is an error that asks for a particular exit status, after the
// command's deferred clean-up has run.
type exitCode struct {
	code int
	err  error
}

func (e exitCode) Error() string { return e.err.Error() }
func (e exitCode) Unwrap() error { return e.err }

// usageError is a command-line mistake: the command was called wrongly.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
