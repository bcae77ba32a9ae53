package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Role is what a user may do: viewers read, operators also act (redrive,
// purge, replay).
type Role string

// The roles.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
)

// User is one named token.
type User struct {
	Name  string
	Token string
	Role  Role
}

// MinTokenLen is the shortest token accepted: 16 characters.
const MinTokenLen = 16

// ParseTokens parses ADMIN_TOKENS: comma-separated "name=token" pairs
// (operators), or "name:viewer=token" for a read-only user.
func ParseTokens(s string) ([]User, error) {
	var users []User
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		who, token, ok := strings.Cut(part, "=")
		if !ok || token == "" {
			return nil, fmt.Errorf("%w: %q is not name=token", ErrConfig, redact(part))
		}
		name, role, hasRole := strings.Cut(who, ":")
		u := User{Name: strings.TrimSpace(name), Token: token, Role: RoleOperator}
		if hasRole {
			u.Role = Role(strings.TrimSpace(role))
		}
		users = append(users, u)
	}
	return users, nil
}

func redact(pair string) string {
	if name, _, ok := strings.Cut(pair, "="); ok {
		return name + "=…"
	}
	if len(pair) > 4 {
		return pair[:4] + "…"
	}
	return pair
}

func validateUsers(users []User) error {
	if len(users) == 0 {
		return fmt.Errorf("%w: no token: the console always requires one", ErrConfig)
	}
	names, tokens := map[string]bool{}, map[string]bool{}
	for _, u := range users {
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, " \t\"<>&'"):
			return fmt.Errorf("%w: user name %q: want a plain word", ErrConfig, u.Name)
		case u.Role != RoleViewer && u.Role != RoleOperator:
			return fmt.Errorf("%w: user %s: role %q: want viewer or operator", ErrConfig, u.Name, u.Role)
		case len(u.Token) < MinTokenLen:
			return fmt.Errorf("%w: user %s: token of %d characters: want at least %d", ErrConfig, u.Name, len(u.Token), MinTokenLen)
		case names[u.Name]:
			return fmt.Errorf("%w: user %s is named twice", ErrConfig, u.Name)
		case tokens[u.Token]:
			return fmt.Errorf("%w: user %s shares a token with another user", ErrConfig, u.Name)
		}
		names[u.Name], tokens[u.Token] = true, true
	}
	return nil
}

// TokenFile returns the token stored in path, generating one (32 random
// bytes, hex) into a new file of mode 0600 when there is none; created says
// which. A file readable by others is refused.
func TokenFile(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		st, err := os.Stat(path)
		if err != nil {
			return "", false, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("%w: %s is readable by others (mode %v): chmod 600 it", ErrConfig, path, st.Mode().Perm())
		}
		token = strings.TrimSpace(string(b))
		if len(token) < MinTokenLen {
			return "", false, fmt.Errorf("%w: %s holds a token of %d characters: want at least %d", ErrConfig, path, len(token), MinTokenLen)
		}
		return token, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // never fails (crypto/rand)
	token = hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return TokenFile(path) // another process was first
	}
	if err != nil {
		return "", false, err
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		_ = f.Close()
		return "", false, err
	}
	return token, true, f.Close()
}

// sessions signs and checks session cookies and CSRF tokens. Each user's
// cookies are signed with a key derived from that user's name, role and
// token: replicas configured alike accept each other's sessions, changing a
// user's token or role ends that user's sessions, and adding or removing
// another user ends none.
type sessions struct {
	users map[string]User
	keys  map[string][]byte
	ttl   time.Duration
	now   func() time.Time
}

func newSessions(users []User, ttl time.Duration) *sessions {
	s := &sessions{users: map[string]User{}, keys: map[string][]byte{}, ttl: ttl, now: time.Now}
	for _, u := range users {
		mac := hmac.New(sha256.New, []byte("spectora-stream console session v1"))
		_, _ = fmt.Fprintf(mac, "%s\x00%s\x00%s", u.Name, u.Role, u.Token)
		s.users[u.Name], s.keys[u.Name] = u, mac.Sum(nil)
	}
	return s
}

// login returns the user whose token this is. Every token is compared, in
// constant time, whichever matches.
func (s *sessions) login(token string) (User, bool) {
	var found User
	ok := 0
	given := sha256.Sum256([]byte(token)) // digests: equal lengths, so no length leaks
	for _, u := range s.users {
		want := sha256.Sum256([]byte(u.Token))
		match := subtle.ConstantTimeCompare(want[:], given[:])
		if match == 1 {
			found = u
		}
		ok |= match
	}
	return found, ok == 1
}

func sign(key []byte, payload string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// issue returns a session cookie value for u: its name and expiry, signed
// with its key.
func (s *sessions) issue(u User) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(u.Name)) + "." + strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return payload + "." + sign(s.keys[u.Name], payload)
}

// user is the user a session value names, before any check.
func (s *sessions) user(value string) (User, string, bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return User{}, "", false
	}
	payload := value[:i]
	name64, _, _ := strings.Cut(payload, ".")
	name, err := base64.RawURLEncoding.DecodeString(name64)
	if err != nil {
		return User{}, "", false
	}
	u, ok := s.users[string(name)]
	return u, payload, ok
}

// check returns the user of a session cookie value that is signed with its
// user's current key and unexpired.
func (s *sessions) check(value string) (User, bool) {
	u, payload, ok := s.user(value)
	if !ok || !hmac.Equal([]byte(value[len(payload)+1:]), []byte(sign(s.keys[u.Name], payload))) {
		return User{}, false
	}
	_, expText, _ := strings.Cut(payload, ".")
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil || s.now().Unix() >= exp {
		return User{}, false
	}
	return u, true
}

// csrf is the CSRF token of a session: an HMAC of its cookie value, so it
// needs no storage and dies with the session.
func (s *sessions) csrf(session string) string {
	u, _, ok := s.user(session)
	if !ok {
		return ""
	}
	return sign(s.keys[u.Name], "csrf\x00"+session)
}

func (s *sessions) checkCSRF(session, token string) bool {
	want := s.csrf(session)
	return token != "" && want != "" && hmac.Equal([]byte(token), []byte(want))
}

// cookieName is the session cookie: __Host- makes browsers take it only
// when Secure, for the whole host and no other domain.
const cookieName = "__Host-spectora-console"

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, nil, http.StatusOK, "login", map[string]any{"Next": localPath(r.URL.Query().Get("next"))})
}

// login exchanges a token for a session cookie: Secure, HttpOnly,
// SameSite=Strict. Browsers keep Secure cookies over plain HTTP only from
// loopback: elsewhere, serve the console behind TLS.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.PostFormValue("next"))
	if !sameOrigin(r) {
		c.fail(w, r, nil, http.StatusForbidden, "Refused: the login form was posted from another site.")
		return
	}
	u, ok := c.sessions.login(r.PostFormValue("token"))
	if !ok {
		c.log.Warn("console login refused: wrong token", "remote", r.RemoteAddr)
		c.render(w, nil, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That token is not one of the console's tokens."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: c.sessions.issue(u), Path: "/", MaxAge: int(c.cfg.SessionTTL.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	c.log.Info("console login", "user", u.Name, "role", string(u.Role), "remote", r.RemoteAddr)
	http.Redirect(w, r, "/login/check?next="+url.QueryEscape(next), http.StatusSeeOther)
}

// loginCheck follows a login: with the cookie back, on to the page asked
// for; without it, say why, instead of a silent loop back to the login.
func (c *Console) loginCheck(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if ck, err := r.Cookie(cookieName); err == nil {
		if _, ok := c.sessions.check(ck.Value); ok {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
	}
	c.render(w, nil, http.StatusBadRequest, "login", map[string]any{"Next": next,
		"Error": "The token was right, but your browser didn't keep the session cookie. It is Secure: browsers keep it over " +
			"plain HTTP only from localhost or 127.0.0.1. Open the console through https (a TLS proxy that keeps the Host header), " +
			"or through localhost (kubectl port-forward, an SSH tunnel)."})
}

func (c *Console) logout(w http.ResponseWriter, r *request) error {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r.Request, "/login", http.StatusSeeOther)
	return nil
}

// localPath is p when it is a path on this host, else "/events": a login
// never redirects elsewhere. Control characters and backslashes are refused
// (browsers drop a tab and read "/\t/host" as "//host").
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\") {
		return "/events"
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "/events"
		}
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "//") {
		return "/events"
	}
	return p
}
