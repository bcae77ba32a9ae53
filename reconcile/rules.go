package reconcile

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/spectora-stream/spectora-stream/stream"
)

// Rule derives an event Spectora should have sent from a record's state:
// when the value at Path (a gjson path into the record's resource object) is
// set (not null, false, "" or 0), or equals Equals when that is given, and
// the system never saw EventType for the record, the reconciler publishes
// EventType on its own subject, once per record.
type Rule struct {
	EventType string
	Path      string
	Equals    string
}

// Route is the rule's event's route; its resource is the records it reads.
func (r Rule) Route() stream.Route { return stream.RouteFor(r.EventType) }

// Matches reports whether a JSON:API document {"data": {...}} is in the
// rule's state.
func (r Rule) Matches(doc []byte) bool {
	v := gjson.GetBytes(doc, "data."+r.Path)
	if r.Equals != "" {
		return v.Exists() && v.String() == r.Equals
	}
	switch {
	case !v.Exists(), v.Type == gjson.Null, v.Type == gjson.False:
		return false
	case v.Type == gjson.String:
		return v.Str != ""
	case v.Type == gjson.Number:
		return v.Num != 0
	}
	return true
}

// ParseRules reads "inspection.published=attributes.published_at;
// inspection.canceled=attributes.status==canceled": event type, "=", a path
// in the record's resource object, and optionally "==" and the value it must
// have. Empty: no rules.
func ParseRules(s string) ([]Rule, error) {
	var rules []Rule
	for entry := range strings.SplitSeq(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		typ, cond, ok := strings.Cut(entry, "=")
		typ, cond = strings.TrimSpace(typ), strings.TrimSpace(cond)
		path, equals, _ := strings.Cut(cond, "==")
		r := Rule{EventType: typ, Path: strings.TrimSpace(path), Equals: strings.TrimSpace(equals)}
		route := r.Route()
		switch {
		case !ok || r.Path == "":
			return nil, fmt.Errorf("rule %q: want event.type=attributes.path or event.type=attributes.path==value", entry)
		case route.Resource == stream.Unrouted.Resource || route.Subject() != "spectora."+typ:
			return nil, fmt.Errorf("rule %q: %q is not a resource.action event type", entry, typ)
		case route.Action == Action:
			return nil, fmt.Errorf("rule %q: %q is what the reconciler publishes anyway", entry, typ)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// Types are the rules' event types: the ones the enricher must record
// (enrich.Config.TrackTypes).
func Types(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.EventType)
	}
	return out
}
