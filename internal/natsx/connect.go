package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// Config says where NATS is: an external server or cluster (URL set) or the
// embedded server (URL empty).
type Config struct {
	// URL is NATS_URL: one or more comma-separated server URLs. Empty starts the
	// embedded server.
	URL string
	// Name is the client connection name shown by the server (e.g. "gateway").
	Name string
	// CredsFile is a NATS credentials file (JWT + nkey seed).
	CredsFile string
	// NkeyFile is an NKey seed file (NATS_NKEY); the embedded server's users
	// have one each.
	NkeyFile string
	// User and Password authenticate with user/password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCA, TLSCert and TLSKey configure TLS: a CA bundle to trust and an
	// optional client certificate for mutual TLS.
	TLSCA, TLSCert, TLSKey string
	// ConnectTimeout bounds the first connection attempt.
	ConnectTimeout time.Duration
	// DrainTimeout bounds Drain at shutdown.
	DrainTimeout time.Duration
	// InProcess, when set, connects in-process to an embedded server instead
	// of dialling URL.
	InProcess nats.InProcessConnProvider
}

func (c *Config) validate() error {
	if c.URL != "" {
		if c.CredsFile != "" {
			if _, err := os.Stat(c.CredsFile); err != nil {
				return fmt.Errorf("%w: NATS_CREDS %q: %v", ErrInvalidConfig, c.CredsFile, err)
			}
		}
		if (c.User == "") != (c.Password == "") {
			return fmt.Errorf("%w: NATS_USER and NATS_PASSWORD must be set together", ErrInvalidConfig)
		}
		if (c.TLSCert == "") != (c.TLSKey == "") {
			return fmt.Errorf("%w: NATS_TLS_CERT and NATS_TLS_KEY must be set together", ErrInvalidConfig)
		}
		for name, path := range map[string]string{"NATS_TLS_CA": c.TLSCA, "NATS_TLS_CERT": c.TLSCert, "NATS_TLS_KEY": c.TLSKey} {
			if path == "" {
				continue
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, name, path, err)
			}
		}
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return nil
}

// Conn is a NATS connection.
type Conn struct {
	// NC is the client connection.
	NC    *nats.Conn
	drain time.Duration
	log   *slog.Logger
}

// Open connects to NATS as cfg says: in-process to an embedded server, or to
// cfg.URL with reconnects forever.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "nats")
	opts := []nats.Option{
		nats.Name(cfg.Name),
		// Never give up on the server: a gateway without NATS answers 503 and
		// Svix retries, which is the right behaviour during an outage.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("NATS async error", "subject", subj, "err", err)
		}),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.NkeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS_NKEY %q: %v", ErrInvalidConfig, cfg.NkeyFile, err)
		}
		opts = append(opts, opt)
	}
	if cfg.InProcess != nil {
		nc, err := nats.Connect("", append(opts, nats.InProcessServer(cfg.InProcess))...)
		if err != nil {
			return nil, fmt.Errorf("%w: embedded server: %v", ErrConnect, err)
		}
		return &Conn{NC: nc, drain: cfg.DrainTimeout, log: log}, nil
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: NATS_URL is empty", ErrInvalidConfig)
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	opts = append(opts, nats.Timeout(cfg.ConnectTimeout), nats.RetryOnFailedConnect(false))
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(cfg.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("%w: NATS_URL %s: %w", ErrConnect, redactURL(cfg.URL), ctx.Err())
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%w: NATS_URL %s: %v", ErrConnect, redactURL(cfg.URL), r.err)
		}
		log.Info("connected to NATS", "url", r.nc.ConnectedUrlRedacted())
		return &Conn{NC: r.nc, drain: cfg.DrainTimeout, log: log}, nil
	}
}

// Connected reports whether the client currently holds a live connection.
func (c *Conn) Connected() bool { return c.NC.IsConnected() }

// Close drains the connection, which flushes pending publishes and lets
// subscriptions finish.
func (c *Conn) Close() {
	if !c.NC.IsClosed() {
		closed := make(chan struct{})
		c.NC.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := c.NC.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			c.log.Warn("drain NATS connection", "err", err)
			c.NC.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(c.drain):
				c.log.Warn("NATS drain timed out; closing", "timeout", c.drain)
				c.NC.Close()
			}
		}
	}
}
