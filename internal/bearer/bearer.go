// Package bearer guards an HTTP API with a bearer token kept in a file
// only its owner can read: versd --listen and vers mcp serve --http. It
// never logs or prints a token, only where it is kept.
package bearer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"vers/internal/errdefs"
)

// MinLen is the shortest token accepted from a token file; the ones Load
// makes are 64 hex digits (32 random bytes).
const MinLen = 32

// Require serves next only to requests that carry token as a bearer
// token. Any other request gets 401 and nothing else: no body, so nothing
// about routes, VMs or the server reaches whoever lacks the token. realm
// names the server in the WWW-Authenticate header; refused, if not nil,
// is told of each refusal (to log it).
func Require(token, realm string, refused func(*http.Request), next http.Handler) http.Handler {
	m := NewMatcher(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.Match(r) {
			if refused != nil {
				refused(r)
			}
			Challenge(w, realm)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Challenge answers 401 with the WWW-Authenticate header of realm, and
// nothing else.
func Challenge(w http.ResponseWriter, realm string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", realm))
	w.WriteHeader(http.StatusUnauthorized)
}

// Matcher tells the requests that carry one token as a bearer token.
type Matcher struct{ want [sha256.Size]byte }

func NewMatcher(token string) Matcher { return Matcher{want: sha256.Sum256([]byte(token))} }

// Match reports whether r carries the token. Comparing digests keeps the
// time the same whatever the length.
func (m Matcher) Match(r *http.Request) bool {
	got := sha256.Sum256([]byte(bearer(r.Header.Get("Authorization"))))
	return subtle.ConstantTimeCompare(got[:], m.want[:]) == 1
}

// bearer is the token of an Authorization header of the Bearer scheme
// (whose name is case-insensitive), or "".
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Load is the token in the file path, made on first use: 32 bytes of
// crypto/rand, hex, in a file only its owner can read. A file others can
// read is refused rather than used.
func Load(path string) (string, error) {
	tok, err := readToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	return createToken(path)
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("token file %s has mode %v, so others can read it; chmod 600 it (or remove it for a new token): %w",
			path, st.Mode().Perm(), errdefs.ErrInvalid)
	}
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	tok := strings.TrimSpace(string(b[:n]))
	if len(tok) < MinLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s holds no token of %d characters or more; remove it and a new one is made at the next start: %w",
			path, MinLen, errdefs.ErrInvalid)
	}
	return tok, nil
}

// createToken writes a new token beside path and links it into place, so
// the file is never seen half-written and one made meanwhile is kept.
func createToken(path string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write the token file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(tok + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write the token file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readToken(path)
	} else if err != nil {
		return "", fmt.Errorf("write the token file: %w", err)
	}
	return tok, nil
}
