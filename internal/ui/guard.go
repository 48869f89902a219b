package ui

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"vers/internal/bearer"
)

// Guard is the handler of one TCP listener of versd. A request that carries
// the bearer token reaches the API as it always did. A browser's reaches
// the page and the API with a session, made at GET /ui/login?t=TOKEN from a
// one-time login token (vers ui prints the URL); with no Sessions (a
// listener beyond loopback) there is no page and no session. Anything else is refused
// with a status and no body.
type Guard struct {
	// Addr is the listener's address as a browser writes it in Host
	// (127.0.0.1:PORT): requests for another host name (DNS rebinding) or
	// from a page of another origin are refused.
	Addr     string
	Token    bearer.Matcher
	Sessions *Sessions
	API      http.Handler
	// Refused, if not nil, is told of each refusal and why (to log it).
	Refused func(r *http.Request, why string)
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	if g.Refused != nil {
		g.Refused(r, why)
	}
	if status == http.StatusUnauthorized {
		bearer.Challenge(w, "versd")
		return
	}
	w.WriteHeader(status)
}

func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		if !g.Token.Match(r) {
			g.refuse(w, r, http.StatusUnauthorized, "wrong bearer token")
			return
		}
		g.API.ServeHTTP(w, r)
		return
	}
	if g.Sessions == nil {
		g.refuse(w, r, http.StatusUnauthorized, "no bearer token")
		return
	}
	if r.URL.Path == "/ui/login" && r.Method == http.MethodGet {
		if g.sameOrigin(w, r) {
			g.login(w, r)
		}
		return
	}
	var sess Session
	if c, err := r.Cookie(CookieName(g.Addr)); err == nil {
		sess, _ = g.Sessions.Lookup(c.Value)
	}
	if sess.CSRF == "" {
		g.refuse(w, r, http.StatusUnauthorized, "no session")
		return
	}
	if !g.sameOrigin(w, r) {
		return
	}
	origin := r.Header.Get("Origin")
	changes := r.Method != http.MethodGet && r.Method != http.MethodHead
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	switch {
	case (changes || upgrade) && origin == "":
		// Browsers send Origin with every such request; one without is not
		// the page's.
		g.refuse(w, r, http.StatusForbidden, "no Origin")
		return
	case changes && subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(sess.CSRF)) != 1:
		g.refuse(w, r, http.StatusForbidden, "wrong CSRF token")
		return
	case r.URL.Path == "/v1/ui/login":
		// A session does not make more logins: only the socket's owner or
		// a bearer of the token does.
		g.refuse(w, r, http.StatusForbidden, "a session cannot make logins")
		return
	}
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/ui":
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	case strings.HasPrefix(r.URL.Path, "/ui/"):
		servePage(w, r, sess)
	default:
		g.API.ServeHTTP(w, r.WithContext(WithSession(r.Context())))
	}
}

type sessionKey struct{}

// WithSession marks ctx as a request's that a browser's session let in.
func WithSession(ctx context.Context) context.Context {
	return context.WithValue(ctx, sessionKey{}, true)
}

// BySession reports whether a request reached the API with a browser's
// session (rather than the bearer token or the socket).
func BySession(ctx context.Context) bool {
	v, _ := ctx.Value(sessionKey{}).(bool)
	return v
}

// sameOrigin refuses a request for another host name than the
// listener's (DNS rebinding) or from a page of another origin.
func (g *Guard) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if r.Host != g.Addr {
		g.refuse(w, r, http.StatusForbidden, "host "+r.Host+" is not the listener's")
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+g.Addr {
		g.refuse(w, r, http.StatusForbidden, "foreign origin "+o)
		return false
	}
	return true
}

// login trades a login token for a session cookie, and sends the browser
// to the page.
func (g *Guard) login(w http.ResponseWriter, r *http.Request) {
	id, sess, ok := g.Sessions.Redeem(r.URL.Query().Get("t"))
	if !ok {
		g.refuse(w, r, http.StatusUnauthorized, "login token unknown, used or expired")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName(g.Addr), Value: id, Path: "/",
		Expires: sess.Expires, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
