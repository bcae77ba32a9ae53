package natsx

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process JetStream server that runs when no
// NATS_URL is given, so a newcomer needs nothing but Go.
type EmbeddedConfig struct {
	// StoreDir is the JetStream file store (NATS_STORE_DIR); it survives restarts.
	StoreDir string
	// Listen is the host:port on which the embedded server also accepts client
	// connections (NATS_LISTEN), so the nats CLI and local services can connect.
	// Empty means in-process only.
	Listen string
	// ServerName names the server in logs and JetStream metadata.
	ServerName string
	// StartTimeout bounds how long Start waits for the server to be ready.
	StartTimeout time.Duration
}

// Embedded is a running in-process NATS server with JetStream enabled.
type Embedded struct {
	srv *server.Server
	log *slog.Logger
}

// StartEmbedded starts a nats-server in this process, with JetStream storing in
// cfg.StoreDir, and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, logger *slog.Logger) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("%w: NATS_STORE_DIR must not be empty when NATS_URL is unset", ErrInvalidConfig)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "spectora-stream-embedded"
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: NATS_STORE_DIR %q: %v", ErrInvalidConfig, cfg.StoreDir, err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// The process owns signal handling; the server must not install its own.
		NoSigs: true,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS_LISTEN %q: want host:port: %v", ErrInvalidConfig, cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < -1 || port > 65535 {
			return nil, fmt.Errorf("%w: NATS_LISTEN %q: bad port", ErrInvalidConfig, cfg.Listen)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEmbeddedStart, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "nats-server")
	srv.SetLoggerV2(&serverLogger{log: log}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(cfg.StartTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: not ready within %s (is NATS_LISTEN %q already in use?)", ErrEmbeddedStart, cfg.StartTimeout, cfg.Listen)
	}
	return &Embedded{srv: srv, log: log}, nil
}

// ClientURL is the URL other processes can use to reach the embedded server, or
// "" when it does not listen on the network.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Connect opens an in-process client connection to the embedded server; it never
// touches the network. Options such as a connection name are passed through.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: embedded: %v", ErrConnect, err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has flushed and closed its store.
// Drain client connections first so no acknowledged work is in flight.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger forwards nats-server's logger to slog.
type serverLogger struct{ log *slog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
