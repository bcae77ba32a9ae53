// Package embedded runs the in-process NATS JetStream server used when no
// NATS_URL is given, so a newcomer needs nothing but Go. Only the command
// imports it: nothing a library user links pulls in the NATS server.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/spectora-stream/spectora-stream/internal/lockfile"
)

var (
	// ErrConfig means a setting is out of range; the text names it.
	ErrConfig = errors.New("invalid embedded NATS configuration")
	// ErrStart means the server did not start.
	ErrStart = errors.New("embedded NATS server did not start")
)

// Config configures the embedded server.
type Config struct {
	// StoreDir is the JetStream file store (NATS_STORE_DIR); it survives restarts.
	StoreDir string
	// Listen is the host:port on which the server also accepts client
	// connections (NATS_LISTEN), so the nats CLI and local services can
	// connect. Empty means in-process only.
	Listen string
	// ServerName names the server in logs and JetStream metadata.
	ServerName string
	// StartTimeout bounds how long Start waits for the server to be ready.
	StartTimeout time.Duration
	// NoAuth lets any client connect without credentials (NATS_EMBEDDED_AUTH
	// none). By default clients need a seed file from the store's users/
	// directory: other local processes can't forge events or delete streams.
	NoAuth bool
}

// Server is a running in-process NATS server with JetStream enabled.
type Server struct {
	srv      *server.Server
	lock     *lockfile.Lock
	log      *slog.Logger
	storeDir string
	auth     bool
}

// Start starts a nats-server in this process, with JetStream storing in
// cfg.StoreDir, and waits until it accepts connections. The store directory
// is locked: a second process on it is refused, as two servers on one store
// corrupt it.
func Start(cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("%w: NATS_STORE_DIR must not be empty when NATS_URL is unset", ErrConfig)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "spectora-stream-embedded"
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: NATS_STORE_DIR %q: %v", ErrConfig, cfg.StoreDir, err)
	}
	lock, err := lockfile.Acquire(filepath.Join(cfg.StoreDir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("%w: NATS_STORE_DIR %q: %w; is another spectora-stream running on it?", ErrStart, cfg.StoreDir, err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// The process owns signal handling; the server must not install its own.
		NoSigs: true,
	}
	if !cfg.NoAuth {
		nk, err := users(cfg.StoreDir)
		if err != nil {
			_ = lock.Release()
			return nil, fmt.Errorf("%w: NATS_STORE_DIR %q: credentials: %v", ErrStart, cfg.StoreDir, err)
		}
		opts.Nkeys = nk
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			_ = lock.Release()
			return nil, fmt.Errorf("%w: NATS_LISTEN %q: want host:port: %v", ErrConfig, cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			_ = lock.Release()
			return nil, fmt.Errorf("%w: NATS_LISTEN %q: bad port", ErrConfig, cfg.Listen)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		_ = lock.Release()
		return nil, fmt.Errorf("%w: %v", ErrStart, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "nats-server")
	fatal := make(chan string, 1)
	srv.SetLoggerV2(&serverLogger{log: log, fatal: fatal}, false, false, false)
	go srv.Start()
	ready := make(chan bool, 1)
	go func() { ready <- srv.ReadyForConnections(cfg.StartTimeout) }()
	fail := func(why string) (*Server, error) {
		srv.Shutdown()
		srv.WaitForShutdown()
		_ = lock.Release()
		return nil, fmt.Errorf("%w: %s", ErrStart, why)
	}
	select {
	case msg := <-fatal:
		// The server reports a failed listen (a taken NATS_LISTEN port) at
		// once; no need to wait out the start timeout.
		return fail(fmt.Sprintf("NATS_LISTEN %q: %s", cfg.Listen, msg))
	case ok := <-ready:
		if !ok {
			return fail(fmt.Sprintf("not ready within %s", cfg.StartTimeout))
		}
	}
	return &Server{srv: srv, lock: lock, log: log, storeDir: cfg.StoreDir, auth: !cfg.NoAuth}, nil
}

// SeedFile is the seed file of user, or "" when the server needs no
// credentials.
func (s *Server) SeedFile(user string) string {
	if !s.auth {
		return ""
	}
	return SeedFile(s.storeDir, user)
}

// InProcess is what nats.InProcessServer needs to connect without the network.
func (s *Server) InProcess() *server.Server { return s.srv }

// ClientURL is the URL other processes can use to reach the server, or ""
// when it does not listen on the network.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Shutdown stops the server and waits until it has flushed and closed its
// store, then releases the store's lock. Drain client connections first so
// no acknowledged work is in flight.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	_ = s.lock.Release()
}

// serverLogger forwards nats-server's logger to slog. Its notices (the
// start-up banner, some thirty lines) are at debug: the service's own start
// lines say what a user needs. Fatal errors also go to fatal, for Start.
type serverLogger struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l *serverLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
