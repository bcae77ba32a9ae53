package gateway

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultSource is the source name of webhooks posted to /webhooks/spectora.
const DefaultSource = "default"

var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidSourceName reports whether name can name a source: lowercase
// letters, digits, _ or -, at most 63 characters.
func ValidSourceName(name string) bool { return sourceName.MatchString(name) }

// ParseSources reads SPECTORA_WEBHOOK_SOURCES: named sources (one per Spectora
// company), each with its own secrets, separated by semicolons:
//
//	acme=whsec_AAA whsec_BBB;beta=whpk_CCC
//
// Source names are lowercase letters, digits, "_" and "-". Secrets are validated
// by NewVerifier. An empty string means no named sources.
func ParseSources(s string) (map[string][]string, error) {
	out := map[string][]string{}
	n := 0
	for entry := range strings.SplitSeq(s, ";") {
		n++
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, secrets, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, fmt.Errorf("%w: SPECTORA_WEBHOOK_SOURCES: entry %d: want name=secret[ secret…]", ErrBadConfig, n)
		}
		if !sourceName.MatchString(name) {
			return nil, fmt.Errorf("%w: SPECTORA_WEBHOOK_SOURCES: source name %q: want lowercase letters, digits, _ or -, at most 63", ErrBadConfig, name)
		}
		if name == DefaultSource {
			return nil, fmt.Errorf("%w: SPECTORA_WEBHOOK_SOURCES: %q is reserved for /webhooks/spectora (set SPECTORA_WEBHOOK_SECRET)", ErrBadConfig, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: SPECTORA_WEBHOOK_SOURCES: source %q appears twice", ErrBadConfig, name)
		}
		list := SplitSecrets(secrets)
		if len(list) == 0 {
			return nil, fmt.Errorf("%w: SPECTORA_WEBHOOK_SOURCES: source %q has no secret", ErrNoSecret, name)
		}
		out[name] = list
	}
	return out, nil
}
