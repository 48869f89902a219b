package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"vers/api"
	"vers/internal/bearer"
	"vers/internal/errdefs"
	"vers/internal/ui"
)

// uiFront is the loopback listener the web UI is served on: --listen's when
// it is on loopback, or else one opened on a free port of 127.0.0.1 at the
// first POST /v1/ui/login. The UI is never served beyond loopback.
type uiFront struct {
	sessions *ui.Sessions
	mu       sync.Mutex
	addr     string
	// open serves a new loopback listener and is its address.
	open func() (string, error)
}

// ensure is the UI's listener, opened if there is none yet.
func (f *uiFront) ensure() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addr != "" {
		return f.addr, nil
	}
	if f.open == nil {
		return "", fmt.Errorf("this daemon serves no web UI: %w", errdefs.ErrUnavailable)
	}
	addr, err := f.open()
	if err != nil {
		return "", err
	}
	f.addr = addr
	return addr, nil
}

// uiLogin makes a one-time login URL for the web UI. Only the socket's
// owner or a bearer of the token gets here: the guard refuses a session.
func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	drain(w, r)
	if ui.BySession(r.Context()) {
		s.writeError(w, r, fmt.Errorf("a browser's session cannot make logins; run vers ui: %w", errdefs.ErrUnauthorized))
		return
	}
	if s.ui == nil {
		s.writeError(w, r, fmt.Errorf("this daemon serves no web UI: %w", errdefs.ErrUnavailable))
		return
	}
	addr, err := s.ui.ensure()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, exp := s.ui.sessions.NewLogin()
	u := url.URL{Scheme: "http", Host: addr, Path: "/ui/login", RawQuery: url.Values{"t": {tok}}.Encode()}
	writeJSON(w, http.StatusOK, api.UILogin{URL: u.String(), Addr: addr, ExpiresAt: exp.UTC()})
}

// guard is the handler of a TCP listener at addr: the bearer token, and
// the web UI's sessions when the listener is on loopback.
func (s *Server) guard(addr string, loopback bool, token string, log *slog.Logger) http.Handler {
	g := &ui.Guard{Addr: addr, Token: bearer.NewMatcher(token), API: s.Handler(), Refused: func(r *http.Request, why string) {
		log.Debug("refused a request", "remote", r.RemoteAddr, "path", r.URL.Path, "why", why)
	}}
	if loopback && s.ui != nil {
		g.Sessions = s.ui.sessions
	}
	return g
}

// openUI serves the UI on a free port of 127.0.0.1 until ctx ends.
func (s *Server) openUI(ctx context.Context, tokenFile string, log *slog.Logger) (string, error) {
	token, err := bearer.Load(tokenFile)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen on 127.0.0.1 for the web UI: %w", err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: s.guard(addr, true, token, log), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("versd serves the web UI on loopback; requests need a session or the bearer token", "addr", addr)
	return addr, nil
}
