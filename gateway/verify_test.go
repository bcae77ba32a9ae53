package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/spectora-stream/spectora-stream/internal/webhook"
	"github.com/spectora-stream/spectora-stream/stream"
)

func newSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// svixSign signs with the svix library, as Svix itself does.
func svixSign(t testing.TB, secret, id string, ts time.Time, body []byte) string {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestVerify(t *testing.T) {
	secret, oldSecret, otherSecret := newSecret(t), newSecret(t), newSecret(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubKey := "whpk_" + base64.StdEncoding.EncodeToString(pub)
	now := time.Unix(1_790_000_000, 0)
	body := []byte(`{"type":"inspection.confirmed","id":42}`)
	const id = "msg_2abc"
	ts := strconv.FormatInt(now.Unix(), 10)
	v1a := func(b []byte) string {
		return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, signedContent(id, ts, b)))
	}

	tests := []struct {
		name    string
		secrets []string
		hdrs    SignedHeaders
		body    []byte
		wantErr error
	}{
		{"valid", []string{secret}, SignedHeaders{id, ts, svixSign(t, secret, id, now, body)}, body, nil},
		{"rotated: new secret configured, signed with old and new", []string{secret, oldSecret},
			SignedHeaders{id, ts, svixSign(t, oldSecret, id, now, body) + " " + svixSign(t, secret, id, now, body)}, body, nil},
		{"rotated: only old signature, both configured", []string{secret, oldSecret},
			SignedHeaders{id, ts, svixSign(t, oldSecret, id, now, body)}, body, nil},
		{"tampered body", []string{secret}, SignedHeaders{id, ts, svixSign(t, secret, id, now, body)},
			[]byte(`{"type":"inspection.deleted","id":42}`), ErrSignatureMismatch},
		{"tampered id", []string{secret}, SignedHeaders{"msg_other", ts, svixSign(t, secret, id, now, body)}, body, ErrSignatureMismatch},
		{"wrong secret", []string{secret}, SignedHeaders{id, ts, svixSign(t, otherSecret, id, now, body)}, body, ErrSignatureMismatch},
		{"stale timestamp", []string{secret}, func() SignedHeaders {
			old := now.Add(-6 * time.Minute)
			return SignedHeaders{id, strconv.FormatInt(old.Unix(), 10), svixSign(t, secret, id, old, body)}
		}(), body, ErrTimestampTooOld},
		{"future timestamp", []string{secret}, func() SignedHeaders {
			fut := now.Add(6 * time.Minute)
			return SignedHeaders{id, strconv.FormatInt(fut.Unix(), 10), svixSign(t, secret, id, fut, body)}
		}(), body, ErrTimestampTooNew},
		{"just inside tolerance", []string{secret}, func() SignedHeaders {
			old := now.Add(-4*time.Minute - 59*time.Second)
			return SignedHeaders{id, strconv.FormatInt(old.Unix(), 10), svixSign(t, secret, id, old, body)}
		}(), body, nil},
		{"timestamp not a number", []string{secret}, SignedHeaders{id, "yesterday", svixSign(t, secret, id, now, body)}, body, ErrMalformedHeaders},
		{"signature without version", []string{secret}, SignedHeaders{id, ts, "abcdef"}, body, ErrMalformedHeaders},
		{"unknown version only", []string{secret}, SignedHeaders{id, ts, "v2," + strings.TrimPrefix(svixSign(t, secret, id, now, body), "v1,")}, body, ErrSignatureMismatch},
		{"v1a valid", []string{pubKey}, SignedHeaders{id, ts, v1a(body)}, body, nil},
		{"v1a next to v1, both keys", []string{secret, pubKey}, SignedHeaders{id, ts, svixSign(t, otherSecret, id, now, body) + " " + v1a(body)}, body, nil},
		{"v1a tampered body", []string{pubKey}, SignedHeaders{id, ts, v1a(body)}, []byte(`{}`), ErrSignatureMismatch},
		{"v1a garbage base64", []string{pubKey}, SignedHeaders{id, ts, "v1a,!!!"}, body, ErrSignatureMismatch},
		{"v1 signature but only a public key configured", []string{pubKey}, SignedHeaders{id, ts, svixSign(t, secret, id, now, body)}, body, ErrSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier("TEST", tt.secrets)
			if err != nil {
				t.Fatal(err)
			}
			v.now = func() time.Time { return now }
			_, err = v.Verify(tt.hdrs, tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestReadSignedHeaders(t *testing.T) {
	tests := []struct {
		name    string
		hdr     map[string]string
		want    SignedHeaders
		wantErr error
	}{
		{"svix headers", map[string]string{"svix-id": "msg_1", "svix-timestamp": "1", "svix-signature": "v1,x"}, SignedHeaders{"msg_1", "1", "v1,x"}, nil},
		{"webhook headers", map[string]string{"webhook-id": "msg_2", "webhook-timestamp": "2", "webhook-signature": "v1,y"}, SignedHeaders{"msg_2", "2", "v1,y"}, nil},
		{"incomplete svix falls back to webhook", map[string]string{"svix-id": "msg_1", "webhook-id": "msg_2", "webhook-timestamp": "2", "webhook-signature": "v1,y"}, SignedHeaders{"msg_2", "2", "v1,y"}, nil},
		{"none", map[string]string{}, SignedHeaders{}, ErrMissingHeaders},
		{"no signature", map[string]string{"svix-id": "msg_1", "svix-timestamp": "1"}, SignedHeaders{}, ErrMissingHeaders},
		{"id too long", map[string]string{"svix-id": strings.Repeat("a", 300), "svix-timestamp": "1", "svix-signature": "v1,x"}, SignedHeaders{}, ErrMalformedHeaders},
		{"id with space", map[string]string{"svix-id": "msg 1", "svix-timestamp": "1", "svix-signature": "v1,x"}, SignedHeaders{}, ErrMalformedHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.hdr {
				h.Set(k, v)
			}
			got, err := ReadSignedHeaders(h.Get)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewVerifierRejectsBadSecrets(t *testing.T) {
	secret := newSecret(t)
	tests := []struct {
		name    string
		secrets []string
		wantErr error
	}{
		{"none", nil, ErrNoSecret},
		{"empty whsec", []string{"whsec_"}, ErrBadSecret},
		{"short whsec", []string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))}, ErrBadSecret},
		{"not base64", []string{"whsec_***"}, ErrBadSecret},
		{"no prefix", []string{strings.TrimPrefix(secret, "whsec_")}, ErrBadSecret},
		{"signing key instead of public key", []string{"whsk_" + base64.StdEncoding.EncodeToString(make([]byte, 64))}, ErrBadSecret},
		{"public key of wrong size", []string{"whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 16))}, ErrBadSecret},
		{"second entry bad", []string{secret, "whsec_"}, ErrBadSecret},
		{"ok", []string{secret}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier("SPECTORA_WEBHOOK_SECRET", tt.secrets)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "SPECTORA_WEBHOOK_SECRET") {
					t.Errorf("error %q does not name the setting", err)
				}
				for _, s := range tt.secrets {
					if len(s) > 8 && strings.Contains(err.Error(), s) {
						t.Errorf("error %q leaks a secret", err)
					}
				}
			}
		})
	}
}

func TestSplitSecretsAndSources(t *testing.T) {
	if got := SplitSecrets(" a, b  c,,"); strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("SplitSecrets = %q", got)
	}
	got, err := ParseSources("acme=whsec_a whsec_b; beta = whpk_c ;")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["acme"]) != 2 || got["beta"][0] != "whpk_c" {
		t.Fatalf("ParseSources = %v", got)
	}
	for _, bad := range []string{"whsec_secretonly", "Acme=whsec_a", "default=whsec_a", "a=whsec_a;a=whsec_b", "a="} {
		if _, err := ParseSources(bad); err == nil {
			t.Errorf("ParseSources(%q) = nil error", bad)
		} else if strings.Contains(err.Error(), "whsec_") && strings.Contains(bad, "secretonly") && strings.Contains(err.Error(), "secretonly") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func FuzzReadSignedHeaders(f *testing.F) {
	f.Add("msg_1", "1790000000", "v1,abc v1a,def")
	f.Add("", "", "")
	f.Add("msg 1", "-5", ",,, v1,")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 24))
	v, err := NewVerifier("TEST", []string{secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string) {
		h := map[string]string{"svix-id": id, "svix-timestamp": ts, "svix-signature": sig}
		got, err := ReadSignedHeaders(func(k string) string { return h[k] })
		if err != nil {
			return
		}
		if len(got.ID) > maxIDLen || strings.ContainsAny(got.ID, " \r\n\t") {
			t.Fatalf("accepted bad id %q", got.ID)
		}
		// Random signatures must never verify.
		if _, err := v.Verify(got, []byte("{}")); err == nil {
			t.Fatalf("random signature %q verified", sig)
		}
	})
}

// BenchmarkVerifyAndEnvelope measures the CPU work per webhook without I/O:
// signature check, type/ID extraction, routing and protobuf encoding.
func BenchmarkVerifyAndEnvelope(b *testing.B) {
	secret := newSecret(b)
	v, err := NewVerifier("BENCH", []string{secret})
	if err != nil {
		b.Fatal(err)
	}
	body := webhook.Body("inspection.confirmed", "42", map[string]any{"padding": string(bytes.Repeat([]byte("x"), 400))})
	now := time.Now()
	hdrs := SignedHeaders{ID: "msg_bench", Timestamp: fmt.Sprint(now.Unix()), Signature: svixSign(b, secret, "msg_bench", now, body)}
	fields := DefaultFields()
	b.ReportAllocs()
	for b.Loop() {
		signedAt, err := v.Verify(hdrs, body)
		if err != nil {
			b.Fatal(err)
		}
		typ, id := fields.Extract(body)
		if _, err := Message(Inbound{ID: hdrs.ID, Type: typ, RecordID: id, Source: DefaultSource, Route: stream.RouteFor(typ), SignedAt: signedAt, ReceivedAt: now, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefusal measures the CPU a forged request costs, from the
// signature headers to the refusal, for the shapes an attacker can choose.
// Compare with "genuine" (a valid signature) and "missing headers".
func BenchmarkRefusal(b *testing.B) {
	secret := newSecret(b)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_ = priv
	body := []byte(`{"type":"inspection.confirmed","id":42}`)
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	v1 := func(n int) string {
		var s []string
		for range n {
			s = append(s, "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
		}
		return strings.Join(s, " ")
	}
	v1a := func(n int) string {
		var s []string
		for range n {
			s = append(s, "v1a,"+base64.StdEncoding.EncodeToString(make([]byte, 64)))
		}
		return strings.Join(s, " ")
	}
	whsec, err := NewVerifier("B", []string{secret})
	if err != nil {
		b.Fatal(err)
	}
	both, err := NewVerifier("B", []string{secret, "whpk_" + base64.StdEncoding.EncodeToString(pub)})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		v    *Verifier
		sig  string
		ok   bool
	}{
		{"genuine", whsec, svixSign(b, secret, "msg_b", now, body), true},
		{"missing headers", whsec, "", false},
		{"one forged v1", whsec, v1(1), false},
		{"11 forged v1 (the most checked)", whsec, v1(11), false},
		{"41 forged v1 (refused unchecked)", whsec, v1(41), false},
		{"11 forged v1a, whpk configured", both, v1a(11), false},
		{"41 forged v1a (refused unchecked)", both, v1a(41), false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			h := SignedHeaders{ID: "msg_b", Timestamp: ts, Signature: tc.sig}
			b.ReportAllocs()
			for b.Loop() {
				hdrs, err := ReadSignedHeaders(func(k string) string {
					switch k {
					case "svix-id":
						return h.ID
					case "svix-timestamp":
						return h.Timestamp
					case "svix-signature":
						return h.Signature
					}
					return ""
				})
				if err == nil {
					_, err = tc.v.Verify(hdrs, body)
				}
				if (err == nil) != tc.ok {
					b.Fatalf("err = %v", err)
				}
			}
		})
	}
}

// FuzzVerifyMatchesSvix holds the v1 check to the svix library's: for any
// body, ID, timestamp and signature header (built around a genuine
// signature, which the fuzzer may corrupt), the gateway never accepts what
// the library refuses, and accepts what it accepts unless one of the
// gateway's own limits (entry counts, a printable ID, a positive timestamp)
// refused the headers first.
func FuzzVerifyMatchesSvix(f *testing.F) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier("FUZZ", []string{secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"type":"a.b"}`), "msg_1", int64(1700000000), "", "", 0, byte(0))
	f.Add([]byte(`{}`), "msg_2", int64(1700000000), "v1,AAAA ", " v2,x", 3, byte('A'))
	f.Add([]byte(`x`), "id", int64(1700000000), "v1,", ",tail", 44, byte('/'))
	f.Add([]byte(`y`), "id", int64(1700000000), "", ",extra", -1, byte(0))
	f.Fuzz(func(t *testing.T, body []byte, id string, unix int64, before, after string, flip int, with byte) {
		ts := time.Unix(unix, 0)
		genuine, err := wh.Sign(id, ts, body) // "v1,<base64>"
		if err != nil {
			t.Skip()
		}
		if flip >= 0 && flip < len(genuine) {
			b := []byte(genuine)
			b[flip] = with
			genuine = string(b)
		}
		header := before + genuine + after
		hdr := http.Header{}
		hdr.Set("svix-id", id)
		hdr.Set("svix-timestamp", strconv.FormatInt(unix, 10))
		hdr.Set("svix-signature", header)
		libErr := wh.VerifyIgnoringTimestamp(body, hdr)

		v.now = func() time.Time { return ts }
		h, err := ReadSignedHeaders(hdr.Get)
		if err == nil {
			var s Signed
			if s, err = v.Check(h); err == nil {
				err = v.VerifyBody(&s, body)
			}
		}
		switch {
		case err == nil && libErr != nil:
			t.Fatalf("gateway accepts what svix refuses (%v): id %q ts %d header %q", libErr, id, unix, header)
		case err != nil && libErr == nil && !errors.Is(err, ErrMalformedHeaders) && !errors.Is(err, ErrMissingHeaders):
			t.Fatalf("gateway refuses (%v) what svix accepts: id %q ts %d header %q", err, id, unix, header)
		}
	})
}
