package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/events"
	"vers/internal/project"
	"vers/internal/ui"
)

// uiServer is a daemon whose UI listener opens for real, on loopback.
func uiServer(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &Server{eventSrc: VMEvents{Broker: events.New(16), VMs: fixedVMs{{ID: "a1", Alias: "a", State: api.StateRunning}}}, log: log}
	tokenFile := filepath.Join(t.TempDir(), "versd.token")
	s.ui = &uiFront{sessions: ui.NewSessions(nil), open: func() (string, error) { return s.openUI(ctx, tokenFile, log) }}
	return s
}

func newLogin(t *testing.T, s *Server) api.UILogin {
	t.Helper()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/v1/ui/login", nil))
	var l api.UILogin
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &l) != nil {
		t.Fatalf("POST /v1/ui/login: %d %s", w.Code, w.Body)
	}
	return l
}

// TestUILogin: the login opens one loopback listener; its URL logs a
// browser in once; the session reaches the page and the events, from the
// page's origin only.
func TestUILogin(t *testing.T) {
	s := uiServer(t)
	l := newLogin(t, s)
	u, err := url.Parse(l.URL)
	if err != nil || u.Host != l.Addr || !strings.HasPrefix(l.Addr, "127.0.0.1:") || u.Path != "/ui/login" || len(u.Query().Get("t")) != 64 {
		t.Fatalf("login %+v: want http://127.0.0.1:PORT/ui/login?t=TOKEN", l)
	}
	if again := newLogin(t, s); again.Addr != l.Addr || again.URL == l.URL {
		t.Fatalf("a second login %+v: want the same listener, another token", again)
	}

	browser, res, page := openLogin(t, l.URL)
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/ui/" || !strings.Contains(string(page), `name="vers-csrf"`) {
		t.Fatalf("the login URL led to %s: %d %.200s", res.Request.URL, res.StatusCode, page)
	}
	if res, err := http.Get(l.URL); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the login URL used again: %v %v, want 401", res.StatusCode, err)
	}

	base := "http://" + l.Addr
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(context.Background(), "ws://"+l.Addr+"/v1/events", &websocket.DialOptions{
			HTTPClient: browser, HTTPHeader: http.Header{"Origin": {origin}},
		})
	}
	conn, _, err := dial(base)
	if err != nil {
		t.Fatalf("events with the session from the page's origin: %v", err)
	}
	_, msg, err := conn.Read(context.Background())
	conn.CloseNow()
	if err != nil || !strings.Contains(string(msg), `"type":"hello"`) {
		t.Fatalf("first event %s, %v: want the hello", msg, err)
	}
	if _, res, err := dial("http://evil.example"); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("events from a foreign origin: %v, want 403", err)
	}
	req, _ := http.NewRequest("POST", base+"/v1/ui/login", nil)
	req.Header.Set("Origin", base)
	if res, err := browser.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("a session making a login: %v %v, want 403", res.StatusCode, err)
	}
	// Past the guard too, the route itself refuses a session.
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/v1/ui/login", nil).WithContext(ui.WithSession(context.Background())))
	if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "/ui/login?t=") {
		t.Fatalf("POST /v1/ui/login with a session, past the guard: %d %s, want 401 and no login", w.Code, w.Body)
	}
}

// TestWebSocketsRefuseForeignOrigins: the daemon's own WebSockets refuse a
// browser's request from a page of another origin, whatever the listener.
func TestWebSocketsRefuseForeignOrigins(t *testing.T) {
	s := uiServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ws := "ws" + strings.TrimPrefix(srv.URL, "http")
	// (A tunnel connects in the guest before it upgrades; the same Accept
	// refuses it then.)
	for _, path := range []string{"/v1/events", "/v1/vms/a/exec"} {
		_, res, err := websocket.Dial(context.Background(), ws+path, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("%s from a foreign origin: %v, want 403", path, err)
		}
	}
	conn, _, err := websocket.Dial(context.Background(), ws+"/v1/events", nil)
	if err != nil {
		t.Fatalf("events without Origin (a Go client): %v", err)
	}
	conn.CloseNow()
}

// TestUIRoutesWithSession: the routes the page added (checkout, fan-out,
// console) take a browser's session on the UI listener as the others do:
// a change needs the CSRF token and the page's Origin; a read from another
// origin is refused.
func TestUIRoutesWithSession(t *testing.T) {
	s := uiServer(t)
	dir := t.TempDir()
	if _, err := project.Init(dir); err != nil {
		t.Fatal(err)
	}
	heads := &fakeHeads{heads: []api.Head{{Dir: dir, VMID: "a-id"}}}
	fan, _ := fanoutServer(t)
	s.heads, s.fanouts, s.consoles = heads, fan.fanouts, fakeConsoles{"a": "boot\n"}
	l := newLogin(t, s)
	browser, _, page := openLogin(t, l.URL)
	m := regexp.MustCompile(`name="vers-csrf" content="([0-9a-f]{64})"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page: %.300s", page)
	}
	csrf, base := string(m[1]), "http://"+l.Addr
	send := func(method, path, body, origin, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if token != "" {
			req.Header.Set(ui.CSRFHeader, token)
		}
		res, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	checkout := fmt.Sprintf(`{"dir":%q,"vm":"b"}`, dir)
	fanBody := `{"command":"true","on":["root"]}`
	tests := []struct {
		name                       string
		method, path, body, origin string
		token                      string
		want                       int
	}{
		{"checkout without the CSRF token", "POST", "/v1/heads/checkout", checkout, base, "", 403},
		{"checkout with a wrong CSRF token", "POST", "/v1/heads/checkout", checkout, base, strings.Repeat("0", 64), 403},
		{"checkout from a foreign origin", "POST", "/v1/heads/checkout", checkout, "http://evil.example", csrf, 403},
		{"checkout without Origin", "POST", "/v1/heads/checkout", checkout, "", csrf, 403},
		{"fan-out without the CSRF token", "POST", "/v1/fanout", fanBody, base, "", 403},
		{"fan-out from a foreign origin", "POST", "/v1/fanout", fanBody, "http://evil.example", csrf, 403},
		{"console from a foreign origin", "GET", "/v1/vms/a/console", "", "http://evil.example", "", 403},
		{"console", "GET", "/v1/vms/a/console", "", "", "", 200},
		{"fan-out", "POST", "/v1/fanout", fanBody, base, csrf, 200},
		{"checkout", "POST", "/v1/heads/checkout", checkout, base, csrf, 200},
	}
	for _, tt := range tests {
		if got := send(tt.method, tt.path, tt.body, tt.origin, tt.token); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if len(heads.set) != 1 {
		t.Errorf("HEAD recorded %d times, want once (only the checkout let through): %v", len(heads.set), heads.set)
	}
	if head, _ := (&project.Project{Dir: dir}).Head(); head != "b-id" {
		t.Errorf("HEAD of %s is %q after the checkout, want b-id", dir, head)
	}
}

// openLogin follows a login URL as a browser does, keeping its cookies,
// and returns that browser, the last response and the page it ended on.
func openLogin(t *testing.T, url string) (*http.Client, *http.Response, []byte) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, err := browser.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return browser, res, page
}
