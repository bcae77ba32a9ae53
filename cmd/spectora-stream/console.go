package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spectora-stream/spectora-stream/internal/console"
	"github.com/spectora-stream/spectora-stream/internal/ops"
)

// consoleFlags configure the operations console.
type consoleFlags struct {
	Addr       string        `name:"admin-addr" env:"ADMIN_ADDR" default:"127.0.0.1:8081" help:"Address the operations console listens on, or 'off'. Keep it private: loopback, or behind TLS (${env})."`
	Token      string        `name:"admin-token" env:"ADMIN_TOKEN" placeholder:"TOKEN" help:"The console's token (user admin, operator), at least 16 characters. With neither this nor ADMIN_TOKENS, one is generated into ADMIN_TOKEN_FILE (${env})."`
	Tokens     string        `name:"admin-tokens" env:"ADMIN_TOKENS" placeholder:"PAIRS" help:"Named console tokens, comma-separated: 'alice=TOKEN' (operator) or 'bob:viewer=TOKEN' (read-only) (${env})."`
	TokenFile  string        `name:"admin-token-file" env:"ADMIN_TOKEN_FILE" default:"./data/admin-token" help:"With no token set: where the console's generated token is kept (mode 0600) (${env})."`
	JaegerURL  string        `name:"jaeger-ui-url" env:"JAEGER_UI_URL" placeholder:"URL" help:"Jaeger UI's base URL, for trace links on the event page, e.g. http://localhost:16686 (${env})."`
	MetricsURL string        `name:"admin-metrics-urls" env:"ADMIN_METRICS_URLS" placeholder:"URLS" help:"Gateways' /metrics URLs for the health page, comma-separated; every address a host name resolves to is read (${env})."`
	PageRate   int           `name:"admin-page-rate" env:"ADMIN_PAGE_RATE" default:"5" help:"Pages a second one console user may load (burst twice that); past it, 429. Keeps a looping script from starving ingest; 0: no limit (${env})."`
	SessionTTL time.Duration `name:"admin-session-ttl" env:"ADMIN_SESSION_TTL" default:"12h" help:"How long a console login lasts; more than 0 (${env})."`
}

func (f consoleFlags) off() bool { return f.Addr == "" || f.Addr == "off" }

func (f consoleFlags) validate() error {
	if f.off() {
		return nil
	}
	if f.SessionTTL <= 0 {
		return fmt.Errorf("ADMIN_SESSION_TTL %s: want more than 0", f.SessionTTL)
	}
	if f.PageRate < 0 {
		return fmt.Errorf("ADMIN_PAGE_RATE %d: want 0 (no limit) or more", f.PageRate)
	}
	users, err := f.users()
	if err != nil {
		return err
	}
	if len(users) == 0 { // one is generated at start; check the rest
		users = []console.User{{Name: "admin", Token: strings.Repeat("x", console.MinTokenLen), Role: console.RoleOperator}}
	}
	return console.Validate(console.Config{Users: users, JaegerURL: f.JaegerURL, MetricsURLs: splitList(f.MetricsURL)})
}

// users are the console's tokens: ADMIN_TOKEN as user admin, and
// ADMIN_TOKENS; none when neither is set.
func (f consoleFlags) users() ([]console.User, error) {
	users, err := console.ParseTokens(f.Tokens)
	if err != nil {
		return nil, fmt.Errorf("ADMIN_TOKENS: %w", err)
	}
	if f.Token != "" {
		users = append(users, console.User{Name: "admin", Token: f.Token, Role: console.RoleOperator})
	}
	return users, nil
}

// startConsole serves the console on ADMIN_ADDR until ctx ends; the returned
// server is nil when it is off.
func startConsole(ctx context.Context, f consoleFlags, js jetstream.JetStream, gatherer prometheus.Gatherer, log *slog.Logger) (*ops.Server, error) {
	if f.off() {
		return nil, nil
	}
	users, err := f.users()
	if err != nil {
		return nil, usageError{err}
	}
	if len(users) == 0 { // a token of its own, kept in the data directory
		token, created, err := console.TokenFile(f.TokenFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("ADMIN_TOKEN_FILE %s: %w (or set ADMIN_TOKEN)", f.TokenFile, err)}
		}
		users = []console.User{{Name: "admin", Token: token, Role: console.RoleOperator}}
		what := "console token read"
		if created {
			what = "console token generated"
		}
		log.Info(what+"; log in with the file's content (or set ADMIN_TOKEN)", "file", f.TokenFile, "user", "admin")
	}
	c, err := console.New(console.Config{
		Users: users, JaegerURL: f.JaegerURL, Gatherer: gatherer, MetricsURLs: splitList(f.MetricsURL),
		SessionTTL: f.SessionTTL, PageRate: pageRate(f.PageRate), Logger: log,
	}, js)
	if errors.Is(err, console.ErrConfig) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	srv, err := ops.Listen("ADMIN_ADDR", f.Addr, c.Handler(), log)
	if err != nil {
		return nil, err
	}
	go c.Run(ctx, 15*time.Second)
	log.Info("operations console", "url", "http://"+srv.Addr()+"/", "users", len(users))
	return srv, nil
}

type consoleCmd struct {
	NATS    clientFlags  `embed:""`
	Console consoleFlags `embed:""`
}

// Run serves the console alone, against NATS_URL or a running serve's
// embedded server.
func (c *consoleCmd) Run(ctx context.Context, log *slog.Logger) error {
	if c.Console.off() {
		return usageError{errors.New("ADMIN_ADDR is off: the console command has nothing to serve")}
	}
	if err := c.Console.validate(); err != nil {
		return usageError{err}
	}
	conn, js, err := c.NATS.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	srv, err := startConsole(ctx, c.Console, js, nil, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutdownListener(log, "ADMIN_ADDR", srv)
	return nil
}

// pageRate turns ADMIN_PAGE_RATE (0: no limit) into console.Config's
// (negative: no limit).
func pageRate(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
