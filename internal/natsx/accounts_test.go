package natsx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/spectora-stream/spectora-stream/admin"
	"github.com/spectora-stream/spectora-stream/consumers"
	"github.com/spectora-stream/spectora-stream/enrich"
	"github.com/spectora-stream/spectora-stream/internal/natstest"
	"github.com/spectora-stream/spectora-stream/internal/natsx"
	"github.com/spectora-stream/spectora-stream/internal/sim"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
	"github.com/spectora-stream/spectora-stream/stream"
)

var helmVar = regexp.MustCompile(`^<< \$([A-Z_]+) >>$`)

// helmOptions are the server options of the accounts and users of
// deploy/nats/values.yaml (config.merge), the variables "<< $X_PASSWORD >>"
// replaced by passwords of the test's choosing.
func helmOptions(t *testing.T) (*server.Options, map[string]string) {
	t.Helper()
	var values struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					PVC struct {
						Enabled bool   `json:"enabled"`
						Size    string `json:"size"`
					} `json:"pvc"`
				} `json:"fileStore"`
			} `json:"jetstream"`
			Merge map[string]any `json:"merge"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(must(os.ReadFile("../../deploy/nats/values.yaml")), &values); err != nil {
		t.Fatal(err)
	}
	c := values.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || !c.JetStream.FileStore.PVC.Enabled || c.JetStream.FileStore.PVC.Size == "" {
		t.Fatalf("values.yaml must describe a 3-node JetStream cluster with persistent storage: %+v", c)
	}
	passwords := map[string]string{}
	var subst func(v any) any
	subst = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = subst(e)
			}
		case []any:
			for i, e := range x {
				x[i] = subst(e)
			}
		case string:
			if m := helmVar.FindStringSubmatch(x); m != nil {
				passwords[m[1]] = "pw-" + m[1]
				return passwords[m[1]]
			}
		}
		return v
	}
	merged := subst(c.Merge)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // nats.conf knows no \u escapes; subjects hold '>'
	if err := enc.Encode(merged); err != nil {
		t.Fatal(err)
	}
	conf := buf.Bytes()
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the accounts in values.yaml: %v", err)
	}
	return opts, passwords
}

func natsServerFromHelmValues(t *testing.T) (*server.Server, map[string]string) {
	t.Helper()
	opts, passwords := helmOptions(t)
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	return natstest.ServerWith(t, opts), passwords
}

// The compose stack's NATS users are the Helm values' users: same names,
// accounts and permissions.
func TestComposeAccountsMatchHelm(t *testing.T) {
	helm, _ := helmOptions(t)
	for _, u := range []string{"SYS", "GATEWAY", "CONSUMERS", "OPERATOR", "READER"} {
		t.Setenv("NATS_"+u+"_PASSWORD", "pw")
	}
	compose, err := server.ProcessConfigFile("../../deploy/compose/nats.conf")
	if err != nil {
		t.Fatalf("nats-server rejects deploy/compose/nats.conf: %v", err)
	}
	describe := func(o *server.Options) map[string]string {
		out := map[string]string{}
		for _, u := range o.Users {
			perms, _ := json.Marshal(u.Permissions)
			out[u.Username] = u.Account.Name + " " + string(perms)
		}
		return out
	}
	h, c := describe(helm), describe(compose)
	if len(h) != 5 {
		t.Fatalf("Helm values have %d users: %v", len(h), h)
	}
	for name, want := range h {
		if got := c[name]; got != want {
			t.Errorf("user %s:\n  compose %s\n  helm    %s", name, got, want)
		}
	}
	for name := range c {
		if _, ok := h[name]; !ok {
			t.Errorf("compose has user %s, which the Helm values don't", name)
		}
	}
}

// userConn connects as user and records permission violations.
type userConn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []error
}

func connectAs(t *testing.T, s *server.Server, user, password string) *userConn {
	t.Helper()
	u := &userConn{}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		u.mu.Lock()
		u.errs = append(u.errs, err)
		u.mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	u.nc = nc
	u.js, _ = jetstream.New(nc)
	return u
}

func (u *userConn) violated() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, e := range u.errs {
		if errors.Is(e, nats.ErrPermissionViolation) {
			return true
		}
	}
	return false
}

func short() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 1500*time.Millisecond)
}

func rawMsg(subject, id string) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = must(proto.Marshal(&spectorav1.WebhookEvent{Id: id, Type: "inspection.confirmed", Resource: "inspection", Action: "confirmed", RecordId: "7"}))
	msg.Header.Set(stream.HeaderContentType, stream.ContentTypeWebhookEvent)
	return msg
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// Each user in deploy/nats/values.yaml can do its job and no more.
func TestNATSUsersHaveLeastPrivilege(t *testing.T) {
	t.Parallel()
	s, pw := natsServerFromHelmValues(t)
	ctx := context.Background()
	limits := stream.DefaultLimits()

	// gateway: manages SPECTORA and publishes raw events, nothing else.
	gw := connectAs(t, s, "gateway", pw["GATEWAY_PASSWORD"])
	if _, err := natsx.EnsureStream(ctx, gw.js, stream.RawConfig(limits), nil); err != nil {
		t.Fatalf("gateway: ensure SPECTORA: %v", err)
	}
	if _, err := gw.js.PublishMsg(ctx, rawMsg("spectora.inspection.confirmed", "msg_1"), jetstream.WithMsgID("msg_1")); err != nil {
		t.Fatalf("gateway: publish raw event: %v", err)
	}
	for _, denied := range []func(context.Context) error{
		func(c context.Context) error {
			_, err := gw.js.Publish(c, "spectora.enriched.inspection.confirmed", []byte("x"))
			return err
		},
		func(c context.Context) error {
			_, err := gw.js.Publish(c, stream.RedriveSubject(stream.Raw, "enricher", 1), []byte("x"))
			return err
		},
		func(c context.Context) error { return gw.js.DeleteStream(c, stream.Raw) },
		func(c context.Context) error {
			_, err := gw.js.CreateOrUpdateConsumer(c, stream.Raw, jetstream.ConsumerConfig{Durable: "x"})
			return err
		},
	} {
		c, cancel := short()
		if err := denied(c); err == nil {
			t.Error("gateway: a denied action succeeded")
		}
		cancel()
	}
	if !gw.violated() {
		t.Error("gateway: no permission violation reported")
	}

	// consumers: streams, groups, the record cache, enriched republish, DLQ.
	cons := connectAs(t, s, "consumers", pw["CONSUMERS_PASSWORD"])
	for _, cfg := range stream.Configs(limits, 0) {
		if _, err := natsx.EnsureStream(ctx, cons.js, cfg, nil); err != nil {
			t.Fatalf("consumers: ensure %s: %v", cfg.Name, err)
		}
	}
	kv, err := cons.js.CreateOrUpdateKeyValue(ctx, enrich.BucketConfig(time.Hour, 1))
	if err != nil {
		t.Fatalf("consumers: record bucket: %v", err)
	}
	api := httptest.NewServer(sim.NewAPI(sim.APIConfig{Token: "tok"}, sim.NewStore(0)))
	defer api.Close()
	client, _ := spectora.NewClient(spectora.Config{BaseURL: api.URL, Token: "tok"})
	enr := enrich.New(enrich.Config{}, kv, enrich.Clients{"": client})
	for _, cfg := range []consumers.Config{
		{Name: enrich.GroupName, Handler: enr.Handler(cons.js)},
		{Name: "broken", MaxDeliver: 1, Handler: func(context.Context, *consumers.Message) error {
			return consumers.Permanent(errors.New("always fails"))
		}},
	} {
		cfg.WatchInterval = 100 * time.Millisecond // exercise the watcher's API calls too
		g, err := consumers.NewGroup(cfg, cons.js)
		if err != nil {
			t.Fatal(err)
		}
		natstest.Run(t, g)
	}
	waitStream := func(name string, n uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := cons.js.Stream(ctx, name)
			if err == nil {
				if info, err := st.Info(ctx); err == nil && info.State.Msgs >= n {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got %d messages (consumers violations: %v)", name, n, cons.errs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStream(stream.Enriched, 1)
	waitStream(stream.DLQ, 1)
	if _, err := kv.Get(ctx, enrich.Key("", "inspection", "7")); err != nil {
		t.Errorf("consumers: record not cached: %v", err)
	}
	if cons.violated() {
		t.Errorf("consumers: permission violations doing its job: %v", cons.errs)
	}
	c, cancel := short()
	if _, err := cons.js.Publish(c, "spectora.inspection.confirmed", []byte("x")); err == nil {
		t.Error("consumers: published a raw event")
	}
	cancel()

	// operator: dlq and replay commands.
	op := connectAs(t, s, "operator", pw["OPERATOR_PASSWORD"])
	adm := admin.New(op.js)
	dls, err := adm.DeadLetters(ctx, "broken", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("operator: dlq list: %v %v", dls, err)
	}
	if _, err := adm.Redrive(ctx, dls[0].Sequence); err != nil {
		t.Fatalf("operator: redrive: %v", err)
	}
	if _, _, err := adm.Replay(ctx, stream.Raw, enrich.GroupName, time.Time{}, 1); err != nil {
		t.Fatalf("operator: replay: %v", err)
	}

	// reader: a durable pull consumer on the enriched stream; no publishing.
	rd := connectAs(t, s, "reader", pw["READER_PASSWORD"])
	rc, err := rd.js.CreateOrUpdateConsumer(ctx, stream.Enriched, jetstream.ConsumerConfig{Durable: "crm-sync", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("reader: create durable: %v", err)
	}
	m, err := rc.Next(jetstream.FetchMaxWait(3 * time.Second))
	if err != nil {
		t.Fatalf("reader: fetch: %v", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("reader: ack: %v", err)
	}
	for _, denied := range []func(context.Context) error{
		func(c context.Context) error {
			_, err := rd.js.Publish(c, "spectora.inspection.confirmed", []byte("x"))
			return err
		},
		func(c context.Context) error {
			_, err := rd.js.CreateOrUpdateConsumer(c, stream.DLQ, jetstream.ConsumerConfig{Durable: "peek"})
			return err
		},
		func(c context.Context) error { return rd.js.DeleteStream(c, stream.Enriched) },
	} {
		c, cancel := short()
		if err := denied(c); err == nil {
			t.Error("reader: a denied action succeeded")
		}
		cancel()
	}
	if !rd.violated() {
		t.Error("reader: no permission violation reported")
	}
}
