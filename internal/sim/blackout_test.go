package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// A blackout and quick publish change the records but send nothing; the
// list endpoint shows the changes, newest last, paged with links.next.
func TestBlackoutAndQuickPublishChangeRecordsSilently(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Type string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body.Type)
		mu.Unlock()
	}))
	defer gw.Close()
	store := NewStore(0)
	start := time.Now()
	s, err := NewSender(SenderConfig{URL: gw.URL, Secret: secret(t), Rate: 20, Count: RoundLength, BlackoutAfter: 125 * time.Millisecond, BlackoutFor: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	script := NewScript(store)
	script.QuickPublish = true
	if err := s.Run(context.Background(), script); err != nil {
		t.Fatal(err)
	}
	sent, withheld := s.Stats.Delivered.Load(), s.Stats.Withheld.Load()
	if sent+withheld != RoundLength || sent < 1 || withheld < 1 || int(sent) != len(got) {
		t.Fatalf("delivered %d, withheld %d of %d; gateway got %v", sent, withheld, RoundLength, got)
	}
	for _, typ := range got {
		if typ == "inspection.published" {
			t.Fatal("a quick publish sent inspection.published")
		}
	}

	// The one inspection left (the other was deleted) is listed, published.
	api := httptest.NewServer(NewAPI(APIConfig{Token: "k"}, store))
	defer api.Close()
	list := func(query string) (data []map[string]any, next any) {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/v2/inspections?"+query, nil)
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Data  []map[string]any
			Links map[string]any
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&doc) != nil {
			t.Fatalf("list %s: %s", query, resp.Status)
		}
		return doc.Data, doc.Links["next"]
	}
	data, next := list("filter[updated_since]=" + start.UTC().Format(time.RFC3339Nano))
	if len(data) != 1 || next != nil {
		t.Fatalf("inspections changed since the start: %v (next %v)", data, next)
	}
	attrs := data[0]["attributes"].(map[string]any)
	if attrs["status"] != "published" || attrs["published_at"] == nil {
		t.Fatalf("the quick-published inspection: %v", attrs)
	}
	if data, _ := list("filter[updated_since]=" + time.Now().UTC().Format(time.RFC3339Nano)); len(data) != 0 {
		t.Fatalf("changed since now: %v", data)
	}

	// Paging: three agents, two per page.
	for range 3 {
		store.Create(TypeAgent)
	}
	req, _ := http.NewRequest(http.MethodGet, api.URL+"/v2/connections?page[size]=2", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Data  []json.RawMessage
		Links struct{ Next string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if len(doc.Data) != 2 || doc.Links.Next == "" {
		t.Fatalf("first page: %d agents, next %q", len(doc.Data), doc.Links.Next)
	}
}
