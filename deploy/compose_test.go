package deploy

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/mod/modfile"
)

// dotenv reads KEY=VALUE lines of .env.example.
func dotenv(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	return env
}

func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	abs, _ := filepath.Abs(root)
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("spectora-stream", true) })
}

var pinned = regexp.MustCompile(`^[a-z0-9./-]+:[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9]+)?$`)

func TestComposeFile(t *testing.T) {
	p, err := loadCompose(t, dotenv(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats-1", "nats-2", "nats-3", "jaeger", "gateway", "lb", "sim", "consumers", "console"}
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}
	// The NATS image is the server version the tests embed.
	mod, err := modfile.Parse("go.mod", must(os.ReadFile(filepath.Join(root, "go.mod"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	var natsVersion string
	for _, r := range mod.Require {
		if r.Mod.Path == "github.com/nats-io/nats-server/v2" {
			natsVersion = strings.TrimPrefix(r.Mod.Version, "v")
		}
	}
	apps := map[string]string{} // service → spectora-stream command
	for name, s := range p.Services {
		if s.Build != nil {
			if len(s.Command) == 0 {
				t.Errorf("%s: no command", name)
				continue
			}
			apps[name] = s.Command[0]
		} else if !pinned.MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
		if strings.HasPrefix(name, "nats-") && s.Image != "nats:"+natsVersion+"-alpine" {
			t.Errorf("%s: image %s, want nats:%s-alpine like go.mod", name, s.Image, natsVersion)
		}
		if name != "jaeger" && (s.HealthCheck == nil || len(s.HealthCheck.Test) == 0) {
			t.Errorf("%s: no health check", name)
		}
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy {
				if hc := p.Services[dep].HealthCheck; hc == nil || len(hc.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				}
			}
		}
	}
	for _, dep := range []string{"nats-1", "nats-2", "nats-3"} {
		for _, svc := range []string{"gateway", "consumers"} {
			if p.Services[svc].DependsOn[dep].Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must wait for %s to be healthy", svc, dep)
			}
		}
	}
	for svc, dep := range map[string]string{"lb": "gateway", "sim": "lb", "consumers": "sim"} {
		if p.Services[svc].DependsOn[dep].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s must wait for %s to be healthy", svc, dep)
		}
	}
	// Ports the docs name; only the webhook port listens beyond loopback.
	published := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			published[port.Published] = name
			if name != "lb" && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q: only the webhook port may listen beyond loopback", name, port.Published, port.HostIP)
			}
		}
	}
	for port, svc := range map[string]string{"8080": "lb", "16686": "jaeger", "4222": "nats-1", "8090": "sim", "8222": "nats-1", "8081": "console"} {
		if published[port] != svc {
			t.Errorf("port %s is published by %q, want %s", port, published[port], svc)
		}
	}
	for _, svc := range []string{"gateway", "consumers"} {
		if d := p.Services[svc].Deploy; d == nil || d.Replicas == nil || *d.Replicas < 2 {
			t.Errorf("%s: want 2 replicas", svc)
		}
		env := p.Services[svc].Environment
		if v := env["NATS_STREAM_REPLICAS"]; v == nil || *v != "3" {
			t.Errorf("%s: streams must have 3 replicas on the cluster", svc)
		}
	}
	// Every variable given to the binary is one of its settings, and health
	// checks probe the service's readiness: the ops address where there is
	// one (the webhook port serves webhooks only), else the simulator's API.
	for name, command := range apps {
		s := p.Services[name]
		for k := range s.Environment {
			if !knownEnv(t, command, k) {
				t.Errorf("%s: %s is not a setting of `spectora-stream %s`", name, k, command)
			}
		}
		hc := strings.Join(s.HealthCheck.Test, " ")
		if !strings.Contains(hc, "spectora-stream healthcheck") {
			t.Errorf("%s: health check %q should run the binary's healthcheck", name, hc)
		}
		addrVar := "METRICS_ADDR"
		switch command {
		case "sim":
			addrVar = "SIM_API_ADDR"
		case "console":
			addrVar = "ADMIN_ADDR"
		}
		v := s.Environment[addrVar]
		if v == nil {
			t.Errorf("%s: %s is not set, so its health check can't know where to probe", name, addrVar)
			continue
		}
		if port := (*v)[strings.LastIndex(*v, ":")+1:]; !strings.Contains(hc, "127.0.0.1:"+port+"/") {
			t.Errorf("%s: health check %q does not probe %s %s", name, hc, addrVar, *v)
		}
	}
	for _, vol := range []string{"nats-1", "nats-2", "nats-3"} {
		if _, ok := p.Volumes[vol]; !ok {
			t.Errorf("named volume %s missing", vol)
		}
	}
	// Secrets come from .env, never from the file itself.
	raw := string(must(os.ReadFile(filepath.Join(root, "docker-compose.yml"))))
	if strings.Contains(raw, "whsec_") || !strings.Contains(raw, "${SPECTORA_WEBHOOK_SECRET:?") || !strings.Contains(raw, "${SPECTORA_API_TOKEN:?") ||
		!strings.Contains(raw, "${ADMIN_TOKENS:?") {
		t.Error("secrets must be interpolated from .env with ${VAR:?…}, never written in docker-compose.yml")
	}
	// The load balancer forwards to the gateway's port, retries a 503 or a
	// dead replica on another with the body buffered, and limits bodies.
	caddy := string(must(os.ReadFile("compose/Caddyfile")))
	gw := p.Services["gateway"].Environment["HTTP_ADDR"]
	for _, want := range []string{"name gateway", "port " + strings.TrimPrefix(*gw, ":"), "lb_retries", "request_buffers", "{rp.status_code} in [502, 503, 504]", "max_size"} {
		if !strings.Contains(caddy, want) {
			t.Errorf("Caddyfile lacks %q", want)
		}
	}
	// Every image comes from a variable whose default is a pinned image.
	imageLine := regexp.MustCompile(`(?m)^\s*image:\s*(.*)$`)
	fromVar := regexp.MustCompile(`^\$\{[A-Z_]+_IMAGE:-[a-z0-9./_-]+:[0-9][0-9A-Za-z.-]*\}$`)
	for _, m := range imageLine.FindAllStringSubmatch(raw, -1) {
		if !fromVar.MatchString(m[1]) && m[1] != "${SPECTORA_STREAM_IMAGE:-spectora-stream:compose}" {
			t.Errorf("image %q: want ${NAME_IMAGE:-<official pinned image>}", m[1])
		}
	}
	// Replicas on one volume write files of their own; the gateways see
	// clients' addresses through lb.
	if v := p.Services["consumers"].Environment["AUDIT_LOG"]; v == nil || !strings.Contains(*v, "{hostname}") {
		t.Errorf("consumers: AUDIT_LOG must hold {hostname}: two replicas share the volume")
	}
	// The console reads every gateway, acts as the operator user, and the
	// record lookup it offers has its index.
	if v := p.Services["console"].Environment["NATS_USER"]; v == nil || *v != "operator" {
		t.Errorf("console: NATS_USER must be operator (it redrives and replays)")
	}
	if v := p.Services["consumers"].Environment["CONSUMER_GROUPS"]; v == nil || !strings.Contains(*v, "indexer") {
		t.Errorf("consumers: CONSUMER_GROUPS lacks indexer: the console couldn't find events by record ID")
	}
	if v := p.Services["gateway"].Environment["TRUSTED_PROXIES"]; v == nil || *v == "" {
		t.Errorf("gateway: TRUSTED_PROXIES unset: every client would share lb's address")
	}
	docs := string(must(os.ReadFile(filepath.Join(root, "docs", "deployment.md"))))
	for _, s := range []string{"docker compose up", "cp .env.example .env", "http://localhost:16686", "localhost:8080/webhooks/spectora", "local-images.sh"} {
		if !strings.Contains(docs, s) {
			t.Errorf("docs/deployment.md does not mention %q", s)
		}
	}
}

func TestComposeRefusesToStartWithoutSecrets(t *testing.T) {
	env := dotenv(t)
	delete(env, "SPECTORA_WEBHOOK_SECRET")
	_, err := loadCompose(t, env)
	if err == nil || !strings.Contains(err.Error(), "SPECTORA_WEBHOOK_SECRET") {
		t.Fatalf("load without the secret: %v", err)
	}
}
