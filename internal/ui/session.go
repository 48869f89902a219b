// Package ui is versd's web UI: the page and its assets (embedded), the
// one-time logins and the sessions they become, and the guard in front of
// a TCP listener that serves the page and the API to a browser. It must
// never serve the page or the API to a request that carries neither the
// bearer token nor a session, nor let a page of another origin act with a
// session: no CORS headers, a CSRF token on every change, Origin and Host
// checked.
package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"time"
)

const (
	// LoginTTL is how long a login URL can be used, once.
	LoginTTL = 2 * time.Minute
	// SessionTTL is how long a session lasts from its login.
	SessionTTL = 12 * time.Hour
	// cookiePrefix starts the session cookie's name; the listener's port
	// ends it (CookieName).
	cookiePrefix = "vers_session_"
	// CSRFHeader carries the session's CSRF token on every request that
	// changes state; the page reads it from its <meta name="vers-csrf">.
	CSRFHeader = "X-Vers-CSRF"
)

// Sessions holds the login tokens not yet used and the sessions. Only
// digests of the tokens are kept, so a dump of memory or a timing of map
// lookups gives no token away.
type Sessions struct {
	mu       sync.Mutex
	now      func() time.Time
	logins   map[[sha256.Size]byte]time.Time // digest -> expiry
	sessions map[[sha256.Size]byte]Session
}

// Session is a browser's login.
type Session struct {
	CSRF    string
	Expires time.Time
}

// NewSessions is an empty set; now is the clock (time.Now when nil).
func NewSessions(now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{now: now, logins: map[[sha256.Size]byte]time.Time{}, sessions: map[[sha256.Size]byte]Session{}}
}

// CookieName is the name of the session cookie of the listener at addr
// (HOST:PORT). Browsers scope cookies by host and not by port, so two
// versds on 127.0.0.1 would otherwise replace each other's session: each
// listener's cookie is named after its port.
func CookieName(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		port = "0"
	}
	return cookiePrefix + port
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

func digest(tok string) [sha256.Size]byte { return sha256.Sum256([]byte(tok)) }

// NewLogin is a fresh one-time login token and when it expires.
func (s *Sessions) NewLogin() (string, time.Time) {
	tok := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	exp := s.now().Add(LoginTTL)
	s.logins[digest(tok)] = exp
	return tok, exp
}

// Redeem uses up the login token tok, and is the id of the session it
// becomes, or false for a token unknown, used or expired.
func (s *Sessions) Redeem(tok string) (string, Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	d := digest(tok)
	if _, ok := s.logins[d]; !ok || tok == "" {
		return "", Session{}, false
	}
	delete(s.logins, d)
	id := randomToken()
	sess := Session{CSRF: randomToken(), Expires: s.now().Add(SessionTTL)}
	s.sessions[digest(id)] = sess
	return id, sess, true
}

// Lookup is the session of id, if it exists and has not expired.
func (s *Sessions) Lookup(id string) (Session, bool) {
	if id == "" {
		return Session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[digest(id)]
	if !ok || !s.now().Before(sess.Expires) {
		return Session{}, false
	}
	return sess, true
}

// prune drops what has expired. s.mu is held.
func (s *Sessions) prune() {
	now := s.now()
	for d, exp := range s.logins {
		if !now.Before(exp) {
			delete(s.logins, d)
		}
	}
	for d, sess := range s.sessions {
		if !now.Before(sess.Expires) {
			delete(s.sessions, d)
		}
	}
}
