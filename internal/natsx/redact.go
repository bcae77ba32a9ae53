package natsx

import (
	"net/url"
	"strings"
)

// redactURL hides credentials in a (comma-separated) NATS URL so it can be logged
// and put into error messages.
func redactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			parts[i] = strings.TrimSpace(p)
			if err != nil {
				parts[i] = "<unparseable URL>"
			}
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
