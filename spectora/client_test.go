package spectora_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/internal/apitest"
	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
	"github.com/spectora-stream/spectora-stream/spectora"
)

func client(t *testing.T, api *apitest.API) *spectora.Client {
	t.Helper()
	c, err := spectora.NewClient(spectora.Config{BaseURL: api.URL, Token: apitest.Token, RateLimit: 1000, RateBurst: 100})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFetchHonours429AndRetries5xx(t *testing.T) {
	t.Parallel()
	t.Run("short Retry-After waited in process", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Fail429.Store(1)
		rec, err := client(t, api).Fetch(context.Background(), "inspection", "1")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND {
			t.Fatalf("Fetch = %+v, %v", rec, err)
		}
		times := api.CallTimes()
		if len(times) != 2 || times[1].Sub(times[0]) < 900*time.Millisecond {
			t.Fatalf("calls at %v: Retry-After 1 not honoured", times)
		}
	})
	t.Run("long Retry-After is handed to the caller", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Fail429.Store(1)
		api.RetryAfter = "120"
		_, err := client(t, api).Fetch(context.Background(), "inspection", "1")
		var apiErr *spectora.Error
		if !errors.As(err, &apiErr) || apiErr.RetryAfter != 120*time.Second || apiErr.Status != 429 || api.Calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls, want a 429 Error asking for 120s", err, api.Calls.Load())
		}
	})
	t.Run("5xx retried with backoff", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Fail500.Store(2)
		rec, err := client(t, api).Fetch(context.Background(), "agent", "3")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_FOUND || rec.Path != "/v2/connections/3" || api.Calls.Load() != 3 {
			t.Fatalf("Fetch = %+v, %v after %d calls", rec, err, api.Calls.Load())
		}
	})
	t.Run("5xx forever is a retryable error", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Fail500.Store(100)
		_, err := client(t, api).Fetch(context.Background(), "agent", "3")
		var apiErr *spectora.Error
		if !errors.Is(err, spectora.ErrAPI) || !errors.As(err, &apiErr) || apiErr.Permanent || apiErr.Status != 500 || api.Calls.Load() != 4 {
			t.Fatalf("err = %v after %d calls", err, api.Calls.Load())
		}
	})
	t.Run("wrong token is not permanent and not retried in process", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		c, _ := spectora.NewClient(spectora.Config{BaseURL: api.URL, Token: "wrong"})
		_, err := c.Fetch(context.Background(), "agent", "3")
		var apiErr *spectora.Error
		if !errors.As(err, &apiErr) || apiErr.Permanent || apiErr.Status != 401 || api.Calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls", err, api.Calls.Load())
		}
	})
	t.Run("a truncated 200 is never a record", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Garble.Store(1)
		rec, err := client(t, api).Fetch(context.Background(), "inspection", "5")
		if err != nil || api.Calls.Load() != 2 || !strings.Contains(string(rec.Body), `"id":"5"`) {
			t.Fatalf("Fetch = %s, %v after %d calls: want the garbled answer retried", rec.Body, err, api.Calls.Load())
		}
		api.Garble.Store(100)
		_, err = client(t, api).Fetch(context.Background(), "inspection", "6")
		var apiErr *spectora.Error
		if !errors.As(err, &apiErr) || apiErr.Permanent || !strings.Contains(err.Error(), "JSON:API") {
			t.Fatalf("always garbled: %v, want a retryable error naming JSON:API", err)
		}
	})
	t.Run("404 means gone", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		api.Gone("/v2/inspections/9")
		rec, err := client(t, api).Fetch(context.Background(), "inspection", "9")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_GONE {
			t.Fatalf("Fetch = %+v, %v", rec, err)
		}
	})
	t.Run("a resource without a path is not fetched", func(t *testing.T) {
		t.Parallel()
		api := apitest.New(t)
		rec, err := client(t, api).Fetch(context.Background(), "company", "1")
		if err != nil || rec.Status != spectorav1.RecordStatus_RECORD_STATUS_NOT_FETCHED || api.Calls.Load() != 0 {
			t.Fatalf("Fetch = %+v, %v", rec, err)
		}
	})
}

// Concurrent fetches keep their connections: waves of 32 at once open about
// 32 connections in all, not a new one for nearly every request (net/http's
// default keeps only 2 idle connections per host).
func TestConcurrentFetchesReuseConnections(t *testing.T) {
	t.Parallel()
	api := apitest.New(t)
	api.Latency = 20 * time.Millisecond
	c := client(t, api)
	const wave, waves = 32, 4
	for range waves {
		var wg sync.WaitGroup
		for i := range wave {
			wg.Go(func() {
				if _, err := c.Fetch(context.Background(), "inspection", strconv.Itoa(i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if calls, conns := api.Calls.Load(), api.Conns.Load(); calls != wave*waves || conns > wave+wave/4 {
		t.Fatalf("%d requests opened %d connections, want at most %d", calls, conns, wave+wave/4)
	}
}

func TestNewClientRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]spectora.Config{
		"no token":      {Token: " "},
		"not http":      {BaseURL: "ftp://x", Token: "t"},
		"no host":       {BaseURL: "https://", Token: "t"},
		"bad path":      {Token: "t", Paths: map[string]string{"inspection": "v2/inspections"}},
		"negative rate": {Token: "t", RateLimit: -1},
	} {
		if _, err := spectora.NewClient(cfg); !errors.Is(err, spectora.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	// A URL with credentials that doesn't parse never shows them.
	_, err := spectora.NewClient(spectora.Config{BaseURL: "https://bob:s3cret@exa mple.com", Token: "t"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v leaks the password", err)
	}
}

func TestParsePaths(t *testing.T) {
	t.Parallel()
	p, err := spectora.ParsePaths("client=/v3/contacts/{id}, agent=")
	if err != nil || p["client"] != "/v3/contacts/{id}" || p["inspection"] != "/v2/inspections/{id}" {
		t.Fatalf("ParsePaths = %v, %v", p, err)
	}
	if _, ok := p["agent"]; ok {
		t.Fatal("agent= should remove the resource")
	}
	for _, bad := range []string{"inspection", "=/x/{id}", "inspection=/no-id"} {
		if _, err := spectora.ParsePaths(bad); !errors.Is(err, spectora.ErrConfig) {
			t.Errorf("ParsePaths(%q) = %v", bad, err)
		}
	}
}
