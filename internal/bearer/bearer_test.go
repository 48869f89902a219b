package bearer

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequireToken(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	reached := 0
	h := Require(token, "versd", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.Write([]byte("ok"))
	}))
	tests := []struct {
		name, header string
		want         int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong scheme", "Basic " + token, http.StatusUnauthorized},
		{"no scheme", token, http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.Repeat("x", len(token)), http.StatusUnauthorized},
		{"prefix of the token", "Bearer " + token[:10], http.StatusUnauthorized},
		{"empty token", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusOK},
		{"scheme in lower case", "bearer " + token, http.StatusOK},
	}
	for _, tt := range tests {
		reached = 0
		for _, path := range []string{"/v1/health", "/no/such/route"} {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("%s, %s: %d, want %d", tt.name, path, w.Code, tt.want)
			}
			if tt.want == http.StatusUnauthorized {
				if w.Body.Len() != 0 || w.Header().Get("WWW-Authenticate") != `Bearer realm="versd"` || w.Header().Get("Content-Type") != "" {
					t.Errorf("%s: a refusal says more than 401: body %q, headers %v", tt.name, w.Body, w.Header())
				}
			}
		}
		if tt.want == http.StatusUnauthorized && reached != 0 {
			t.Errorf("%s: the API was reached", tt.name)
		}
	}
}

func TestLoadTokenCreatesOnceAndReuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "versd.token")
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
		t.Fatalf("token %q is not 64 hex digits", tok)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}
	again, err := Load(path)
	if err != nil || again != tok {
		t.Fatalf("second load: %q, %v; want the first token", again, err)
	}
	if other, _ := Load(filepath.Join(t.TempDir(), "versd.token")); other == tok {
		t.Fatal("two token files hold one token")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("left beside the token file: %v", entries)
	}
}

func TestLoadTokenRefusals(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte(strings.Repeat("a", 64)), 0o644)
	os.Chmod(open, 0o644)
	if _, err := Load(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a token file others can read: %v", err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := Load(short); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("a short token: %v", err)
	}
}
