// Command peer is the yardstick for the gateway's ingest speed: the plain way
// a Go developer would write it. net/http, the svix library's Verify,
// encoding/json into a struct for the type, and one synchronous JetStream
// publish (deduplicated on the svix-id) per request before answering 204.
// It gives none of the gateway's other guarantees (envelope, headers,
// metrics, tracing, limits); scripts/bench-ingest runs it beside the gateway.
//
// Settings: SPECTORA_WEBHOOK_SECRET, NATS_URL (required; it creates stream
// SPECTORA on spectora.*.*), HTTP_ADDR (default :8080).
package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	svix "github.com/svix/svix-webhooks/go"
)

func main() {
	wh, err := svix.NewWebhook(os.Getenv("SPECTORA_WEBHOOK_SECRET"))
	if err != nil {
		log.Fatalf("SPECTORA_WEBHOOK_SECRET: %v", err)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatalf("NATS_URL: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	_, err = js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
		Name: "SPECTORA", Subjects: []string{"spectora.*.*"}, Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("POST /webhooks/spectora", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1_000_000))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var event struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &event)
		subject := "spectora.unrouted.unknown"
		if resource, action, ok := strings.Cut(strings.ToLower(event.Type), "."); ok {
			subject = "spectora." + resource + "." + strings.ReplaceAll(action, ".", "_")
		}
		id := r.Header.Get("svix-id")
		if id == "" {
			id = r.Header.Get("webhook-id")
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, err := js.Publish(ctx, subject, body, jetstream.WithMsgID(id)); err != nil {
			http.Error(w, "not stored", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	addr := os.Getenv("HTTP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	log.Fatal(http.ListenAndServe(addr, mux))
}
