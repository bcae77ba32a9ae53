package spectora

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	spectorav1 "github.com/spectora-stream/spectora-stream/proto/spectora/v1"
)

// ParseListPaths reads "inspection=/v2/inspections,client=": entries
// override DefaultListPaths; an empty path stops a resource being listed.
func ParseListPaths(s string) (map[string]string, error) {
	return parseOverrides(s, DefaultListPaths(), "list paths", "resource=/path", checkListPaths)
}

func checkListPaths(paths map[string]string) error {
	for res, p := range paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#{") {
			return fmt.Errorf("%w: list path %s=%q: want a path starting with / without a query", ErrConfig, res, p)
		}
	}
	return nil
}

// Listed is one record of a list page.
type Listed struct {
	// ID and Type are the resource object's "id" and "type".
	ID, Type string
	// Record is the record as Fetch would return it: Body is a JSON:API
	// document {"data": <the resource object>}, Path the record's own path,
	// FetchedAt when the page's request left.
	Record Record
}

// Lists reports whether resource has a list path.
func (c *Client) Lists(resource string) bool {
	_, ok := c.cfg.ListPaths[resource]
	return ok
}

// MaxPages bounds one List call, so an API that ignores paging can't keep a
// reconciliation going forever (200 × 10,000 = 2 million records).
const MaxPages = 10_000

// List pages through resource's records changed at or after since (the
// SinceParam filter; since zero lists every record) and calls page with each
// page's records, in the API's order. Paging follows the document's
// links.next (JSON:API); without one, a full page is followed by the next
// page[number]. Each page is retried like Fetch, within the same rate limit;
// an error from page stops the listing and is returned.
func (c *Client) List(ctx context.Context, resource string, since time.Time, page func([]Listed) error) error {
	listPath, ok := c.cfg.ListPaths[resource]
	if !ok {
		return fmt.Errorf("%w: resource %q has no list path", ErrConfig, resource)
	}
	q := url.Values{}
	if !since.IsZero() {
		q.Set(c.cfg.SinceParam, since.UTC().Format(time.RFC3339Nano))
	}
	q.Set("page[size]", strconv.Itoa(c.cfg.PageSize))
	number := 1
	q.Set("page[number]", "1")
	u := c.base.JoinPath(listPath)
	u.RawQuery = q.Encode()
	target := u.String()
	for pages := 0; ; pages++ {
		if pages == MaxPages {
			return &Error{Path: listPath, Err: fmt.Errorf("more than %d pages: does the API honour page[number]?", MaxPages)}
		}
		items, next, err := c.listPage(ctx, resource, listPath, target)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			if err := page(items); err != nil {
				return err
			}
		}
		switch {
		case next != "":
			n, err := c.sameOrigin(listPath, next)
			if err != nil {
				return err
			}
			if n == target {
				return &Error{Path: listPath, Err: errors.New("links.next points at the page itself")}
			}
			target = n
		case len(items) >= c.cfg.PageSize:
			number++
			q.Set("page[number]", strconv.Itoa(number))
			u.RawQuery = q.Encode()
			target = u.String()
		default:
			return nil
		}
	}
}

// sameOrigin resolves a links.next against the base URL and refuses one on
// another host: the API key goes with every request.
func (c *Client) sameOrigin(listPath, next string) (string, error) {
	u, err := c.base.Parse(next)
	if err != nil || u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return "", backoff.Permanent(&Error{Path: listPath, Err: fmt.Errorf("links.next %q is not on %s: not followed", redact(next), c.base.Host)})
	}
	return u.String(), nil
}

func (c *Client) listPage(ctx context.Context, resource, listPath, target string) ([]Listed, string, error) {
	type page struct {
		items []Listed
		next  string
	}
	p, err := retry(ctx, c, listPath, func() (page, error) {
		code, body, start, err := c.request(ctx, resource, listPath, target)
		if err != nil {
			return page{}, err
		}
		if code != http.StatusOK {
			return page{}, backoff.Permanent(&Error{Path: listPath, Status: code, Permanent: true, Err: errors.New("no such list endpoint (set SPECTORA_API_LIST_PATHS)")})
		}
		items, next, err := c.parseList(resource, body, start)
		if err != nil {
			return page{}, &Error{Path: listPath, Status: code, Err: err}
		}
		return page{items, next}, nil
	})
	return p.items, p.next, err
}

// parseList reads a JSON:API collection: {"data": [objects], "links": {"next": …}}.
func (c *Client) parseList(resource string, body []byte, start time.Time) ([]Listed, string, error) {
	var doc struct {
		Data  *[]json.RawMessage `json:"data"`
		Links struct {
			Next json.RawMessage `json:"next"`
		} `json:"links"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, "", fmt.Errorf("answer is not a JSON:API collection: %w", err)
	}
	if doc.Data == nil {
		return nil, "", errors.New(`answer is not a JSON:API collection: no "data" array`)
	}
	var next string
	// links.next is a string, null, or a link object {"href": …}.
	if len(doc.Links.Next) > 0 && string(doc.Links.Next) != "null" {
		var link struct {
			Href string `json:"href"`
		}
		if json.Unmarshal(doc.Links.Next, &next) != nil {
			if json.Unmarshal(doc.Links.Next, &link) != nil {
				return nil, "", errors.New("links.next is neither a URL nor a link object")
			}
			next = link.Href
		}
	}
	items := make([]Listed, 0, len(*doc.Data))
	for i, raw := range *doc.Data {
		var obj struct {
			ID   json.RawMessage `json:"id"`
			Type string          `json:"type"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil || len(obj.ID) == 0 || obj.Type == "" {
			return nil, "", fmt.Errorf("data[%d] is not a resource object with id and type", i)
		}
		id := strings.Trim(string(obj.ID), `"`) // IDs may be strings or numbers
		doc := make([]byte, 0, len(raw)+10)
		doc = append(append(append(doc, `{"data":`...), raw...), '}')
		items = append(items, Listed{ID: id, Type: obj.Type, Record: Record{
			Status: spectorav1.RecordStatus_RECORD_STATUS_FOUND, Body: doc, Path: c.RecordPath(resource, id), FetchedAt: start,
		}})
	}
	return items, next, nil
}

// RecordPath is the path Fetch requests for resource's record id, or "" when
// the resource has no record path.
func (c *Client) RecordPath(resource, id string) string {
	tmpl, ok := c.cfg.Paths[resource]
	if !ok {
		return ""
	}
	return strings.ReplaceAll(tmpl, "{id}", url.PathEscape(id))
}
