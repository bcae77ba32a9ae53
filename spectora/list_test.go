package spectora_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectora-stream/spectora-stream/spectora"
)

// listAPI serves 7 inspections, 3 per page; links says whether it sends
// links.next or leaves paging to page[number]; the first request of all
// is answered 429.
func listAPI(t *testing.T, links bool) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		q := r.URL.Query()
		if r.URL.Path != "/v2/inspections" || r.Header.Get("Authorization") != "Bearer k" || q.Get("filter[updated_since]") != "2026-11-01T00:00:00Z" {
			t.Errorf("request %s %v", r.URL, r.Header)
		}
		page, _ := strconv.Atoi(q.Get("page[number]"))
		size, _ := strconv.Atoi(q.Get("page[size]"))
		var data []string
		for i := (page-1)*size + 1; i <= min(page*size, 7); i++ {
			data = append(data, fmt.Sprintf(`{"id":%d,"type":"inspections","attributes":{"n":%d}}`, i, i))
		}
		next := "null"
		if links && page*size < 7 {
			q.Set("page[number]", strconv.Itoa(page+1))
			next = strconv.Quote("/v2/inspections?" + q.Encode())
		}
		fmt.Fprintf(w, `{"data":[%s],"links":{"next":%s}}`, strings.Join(data, ","), next)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestListPagesThroughEveryRecord(t *testing.T) {
	t.Parallel()
	for _, links := range []bool{true, false} {
		srv, calls := listAPI(t, links)
		c, err := spectora.NewClient(spectora.Config{BaseURL: srv.URL, Token: "k", PageSize: 3, RateLimit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		err = c.List(context.Background(), "inspection", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), func(items []spectora.Listed) error {
			for _, it := range items {
				ids = append(ids, it.ID)
				if want := `{"data":{"id":` + it.ID + `,`; !strings.HasPrefix(string(it.Record.Body), want) || it.Record.Path != "/v2/inspections/"+it.ID {
					t.Errorf("record %s: %s at %s", it.ID, it.Record.Body, it.Record.Path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids, ",") != "1,2,3,4,5,6,7" || calls.Load() != 4 {
			t.Errorf("links %v: ids %v after %d requests (one 429, three pages)", links, ids, calls.Load())
		}
	}
}

func TestListRefusesANextLinkToAnotherHost(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":[{"id":"1","type":"inspections"}],"links":{"next":"https://elsewhere.example/v2/inspections?page[number]=2"}}`)
	}))
	t.Cleanup(srv.Close)
	c, err := spectora.NewClient(spectora.Config{BaseURL: srv.URL, Token: "k", RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	err = c.List(context.Background(), "inspection", time.Time{}, func([]spectora.Listed) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Fatalf("err = %v", err)
	}
	if err := c.List(context.Background(), "invoice", time.Time{}, nil); err == nil {
		t.Fatal("listed a resource without a list path")
	}
	if _, err := spectora.ParseListPaths("inspection=/v2/inspections?x=1"); err == nil {
		t.Fatal("accepted a list path with a query")
	}
}
