package ui

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"vers/internal/bearer"
)

const (
	testAddr  = "127.0.0.1:7777"
	testToken = "0123456789abcdef0123456789abcdef"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newGuard is a guard whose API answers 200 "api" and counts its calls.
func newGuard(t *testing.T) (*Guard, *clock, *int) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	calls := 0
	g := &Guard{
		Addr: testAddr, Token: bearer.NewMatcher(testToken), Sessions: NewSessions(c.now),
		API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			if BySession(r.Context()) != (r.Header.Get("Authorization") == "") {
				t.Errorf("%s %s: BySession %v with Authorization %q", r.Method, r.URL, BySession(r.Context()), r.Header.Get("Authorization"))
			}
			io.WriteString(w, "api")
		}),
	}
	return g, c, &calls
}

func do(g *Guard, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

func req(method, path string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, "http://"+testAddr+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// login redeems a fresh login token and is the session cookie.
func login(t *testing.T, g *Guard) (*http.Cookie, Session) {
	t.Helper()
	tok, _ := g.Sessions.NewLogin()
	w := do(g, req("GET", "/ui/login?t="+tok))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/" {
		t.Fatalf("login: %d to %q, want 303 to /ui/", w.Code, w.Header().Get("Location"))
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies, want 1", len(cookies))
	}
	sess, ok := g.Sessions.Lookup(cookies[0].Value)
	if !ok {
		t.Fatal("the cookie names no session")
	}
	return cookies[0], sess
}

func TestLoginCookie(t *testing.T) {
	g, _, _ := newGuard(t)
	c, sess := login(t, g)
	if c.Name != CookieName(testAddr) || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want %s, HttpOnly, SameSite=Strict, Path=/", c, CookieName(testAddr))
	}
	if len(c.Value) != 64 || len(sess.CSRF) != 64 || c.Value == sess.CSRF {
		t.Errorf("session id %q and CSRF token %q: want two different 64-digit tokens", c.Value, sess.CSRF)
	}
	r := req("GET", "/ui/")
	r.AddCookie(c)
	w := do(g, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<meta name="vers-csrf" content="`+sess.CSRF+`">`) {
		t.Fatalf("the page: %d, without its CSRF token: %.300s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the page's CSP %q", csp)
	}
	for _, asset := range []string{"/ui/app.js", "/ui/style.css", "/ui/vendor/xterm.js", "/ui/vendor/xterm.css", "/ui/vendor/addon-fit.js"} {
		r := req("GET", asset)
		r.AddCookie(c)
		if w := do(g, r); w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Errorf("%s: %d, %d bytes", asset, w.Code, w.Body.Len())
		}
	}
}

func TestRefusals(t *testing.T) {
	g, clk, calls := newGuard(t)
	c, sess := login(t, g)
	foreign := "http://evil.example"
	self := "http://" + testAddr
	tests := []struct {
		name    string
		r       *http.Request
		session bool
		want    int
	}{
		{"page without a session", req("GET", "/ui/"), false, 401},
		{"asset without a session", req("GET", "/ui/vendor/xterm.js"), false, 401},
		{"API without a session", req("GET", "/v1/vms"), false, 401},
		{"change without a session", req("POST", "/v1/vms/a/pause", "Origin", self, CSRFHeader, sess.CSRF), false, 401},
		{"unknown session", req("GET", "/v1/vms", "Cookie", CookieName(testAddr)+"="+strings.Repeat("a", 64)), false, 401},
		{"wrong bearer token, even with a session", req("GET", "/v1/vms", "Authorization", "Bearer "+strings.Repeat("x", 32)), true, 401},
		{"change without a CSRF token", req("POST", "/v1/vms/a/pause", "Origin", self), true, 403},
		{"change with a wrong CSRF token", req("DELETE", "/v1/vms/a", "Origin", self, CSRFHeader, strings.Repeat("0", 64)), true, 403},
		{"change without Origin", req("POST", "/v1/vms/a/pause", CSRFHeader, sess.CSRF), true, 403},
		{"change from a foreign origin", req("POST", "/v1/vms/a/pause", "Origin", foreign, CSRFHeader, sess.CSRF), true, 403},
		{"read from a foreign origin", req("GET", "/v1/vms", "Origin", foreign), true, 403},
		{"WebSocket from a foreign origin", req("GET", "/v1/events", "Upgrade", "websocket", "Origin", foreign), true, 403},
		{"WebSocket without Origin", req("GET", "/v1/events", "Upgrade", "websocket"), true, 403},
		{"another host name (DNS rebinding)", req("GET", "/v1/vms", "Host", "evil.example:7777"), true, 403},
		{"a session making logins", req("POST", "/v1/ui/login", "Origin", self, CSRFHeader, sess.CSRF), true, 403},
	}
	for _, tt := range tests {
		*calls = 0
		if tt.session {
			tt.r.AddCookie(c)
		}
		if h := tt.r.Header.Get("Host"); h != "" {
			tt.r.Host = h
		}
		w := do(g, tt.r)
		if w.Code != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, w.Code, tt.want)
		}
		if *calls != 0 || w.Body.Len() != 0 {
			t.Errorf("%s: the API was reached (%d) or the refusal says more: %q", tt.name, *calls, w.Body)
		}
		for k := range w.Header() {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: CORS header %s", tt.name, k)
			}
		}
	}

	// What the page does is let through, and only that.
	for _, r := range []*http.Request{
		req("GET", "/v1/vms"),
		req("GET", "/v1/vms", "Origin", self),
		req("GET", "/v1/events", "Upgrade", "websocket", "Origin", self),
		req("POST", "/v1/vms/a/pause", "Origin", self, CSRFHeader, sess.CSRF),
		req("GET", "/v1/vms", "Authorization", "Bearer "+testToken),
		req("POST", "/v1/ui/login", "Authorization", "Bearer "+testToken),
	} {
		*calls = 0
		if r.Header.Get("Authorization") == "" {
			r.AddCookie(c)
		}
		if w := do(g, r); w.Code != http.StatusOK || *calls != 1 {
			t.Errorf("%s %s %v: %d, API reached %d times; want it reached", r.Method, r.URL.Path, r.Header, w.Code, *calls)
		}
	}

	clk.t = clk.t.Add(SessionTTL)
	r := req("GET", "/v1/vms")
	r.AddCookie(c)
	if w := do(g, r); w.Code != http.StatusUnauthorized {
		t.Errorf("an expired session: %d, want 401", w.Code)
	}
}

func TestLoginTokenRefusals(t *testing.T) {
	g, clk, _ := newGuard(t)
	tok, exp := g.Sessions.NewLogin()
	if !exp.Equal(clk.t.Add(LoginTTL)) {
		t.Errorf("login expires %v, want %v", exp, clk.t.Add(LoginTTL))
	}
	if w := do(g, req("GET", "/ui/login?t="+tok, "Origin", "http://evil.example")); w.Code != http.StatusForbidden {
		t.Errorf("login from a foreign origin: %d, want 403", w.Code)
	}
	login := func(tok string) int { return do(g, req("GET", "/ui/login?t="+tok)).Code }
	if code := login(tok); code != http.StatusSeeOther {
		t.Fatalf("first use: %d, want 303", code)
	}
	if code := login(tok); code != http.StatusUnauthorized {
		t.Errorf("second use: %d, want 401", code)
	}
	for _, bad := range []string{"", strings.Repeat("0", 64), tok[:32]} {
		if code := login(bad); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", bad, code)
		}
	}
	late, _ := g.Sessions.NewLogin()
	clk.t = clk.t.Add(LoginTTL)
	if code := login(late); code != http.StatusUnauthorized {
		t.Errorf("an expired token: %d, want 401", code)
	}
	if len(g.Sessions.logins) != 0 {
		t.Errorf("%d login tokens kept after use and expiry", len(g.Sessions.logins))
	}
}

func TestNoSessionsBeyondLoopback(t *testing.T) {
	g, _, calls := newGuard(t)
	tok, _ := g.Sessions.NewLogin()
	g.Sessions = nil
	for _, r := range []*http.Request{req("GET", "/ui/login?t="+tok), req("GET", "/ui/"), req("GET", "/v1/vms")} {
		if w := do(g, r); w.Code != http.StatusUnauthorized || *calls != 0 {
			t.Errorf("%s without sessions: %d, want 401", r.URL, w.Code)
		}
	}
}

func TestCookieName(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:7777": "vers_session_7777",
		"[::1]:8080":     "vers_session_8080",
		"127.0.0.1":      "vers_session_0",
	} {
		if got := CookieName(addr); got != want {
			t.Errorf("CookieName(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestTwoListenersOneBrowser: a browser keeps one cookie jar for 127.0.0.1
// whatever the port, so two versds there must not replace each other's
// session. The jar of net/http/cookiejar scopes cookies as browsers do.
func TestTwoListenersOneBrowser(t *testing.T) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	var bases []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := &Guard{Addr: ln.Addr().String(), Token: bearer.NewMatcher(testToken), Sessions: NewSessions(nil),
			API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") })}
		srv := &http.Server{Handler: g}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		base := "http://" + g.Addr
		tok, _ := g.Sessions.NewLogin()
		res, err := browser.Get(base + "/ui/login?t=" + tok)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("login at %s: %d, want the page", base, res.StatusCode)
		}
		bases = append(bases, base)
	}
	u, _ := url.Parse(bases[0])
	if n := len(jar.Cookies(u)); n != 2 {
		t.Errorf("the browser keeps %d cookies for 127.0.0.1, want one per listener", n)
	}
	for _, base := range bases {
		res, err := browser.Get(base + "/v1/vms")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s after logging in to both: %d, want 200 (its session cookie was replaced)", base, res.StatusCode)
		}
	}
}
