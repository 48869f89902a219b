package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/errdefs"
)

const testToken = "0123456789abcdef0123456789abcdef"

// tcpDaemon is a versd over TCP in miniature: requests without the bearer
// token get a bare 401, others health or an exec that prints and exits 3.
func tcpDaemon(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.Health{Version: "test", PID: 42})
	})
	mux.HandleFunc("GET /v1/vms/{ref}/exec", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		var req api.ExecRequest
		if _, b, err := conn.Read(ctx); err != nil || json.Unmarshal(b, &req) != nil {
			return
		}
		started, _ := json.Marshal(api.ExecControl{Type: "started"})
		conn.Write(ctx, websocket.MessageText, started)
		conn.Write(ctx, websocket.MessageBinary, append([]byte{api.StreamStdout}, r.PathValue("ref")+": "+req.Command...))
		exit, _ := json.Marshal(api.ExecControl{Type: "exit", ExitCode: 3})
		conn.Write(ctx, websocket.MessageText, exit)
		conn.Read(ctx) // until the client closes
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		hello, _ := json.Marshal(api.Event{Type: api.EventHello, VMs: []api.VM{{ID: "db-root"}}})
		conn.Write(r.Context(), websocket.MessageText, hello)
		conn.Read(r.Context()) // until the client closes
	})
	// A tunnel to an echo server: what the client sent, once it half-closed.
	mux.HandleFunc("GET /v1/vms/{ref}/tunnel", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		var got []byte
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if len(b) == 0 {
				break
			}
			got = append(got, b...)
		}
		conn.Write(ctx, websocket.MessageBinary, append([]byte(r.PathValue("ref")+":"), got...))
		conn.Write(ctx, websocket.MessageBinary, nil)
		conn.Close(websocket.StatusNormalClosure, "")
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestURLWithToken(t *testing.T) {
	srv := tcpDaemon(t)
	c, err := NewURL(srv.URL+"/", testToken)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Health(testCtx(t))
	if err != nil || h.PID != 42 {
		t.Fatalf("health: %+v, %v", h, err)
	}
	var out strings.Builder
	ctl, err := c.Exec(testCtx(t), "db-root", api.ExecRequest{Command: "ls"}, ExecIO{Stdout: &out})
	if err != nil || ctl.ExitCode != 3 || out.String() != "db-root: ls" {
		t.Fatalf("exec over TCP: %+v, %v, output %q", ctl, err, out.String())
	}
}

// TestURLStreams: the event stream and a tunnel reach a versd over TCP,
// with the token.
func TestURLStreams(t *testing.T) {
	srv := tcpDaemon(t)
	c, err := NewURL(srv.URL, testToken)
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("seen")
	var first api.Event
	err = c.Events(testCtx(t), func(e api.Event) error { first = e; return stop })
	if err != stop || first.Type != api.EventHello || len(first.VMs) != 1 {
		t.Fatalf("events over TCP: %v, first %+v", err, first)
	}
	tc, err := c.Tunnel(testCtx(t), "db-root", "", 80)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write([]byte("ping"))
	tc.CloseWrite()
	b, err := io.ReadAll(tc)
	if err != nil || string(b) != "db-root:ping" {
		t.Fatalf("tunnel over TCP: %q, %v", b, err)
	}
	if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("end of the tunnel: %v; want an orderly one", err)
	}
}

func TestURLWithoutOrWrongToken(t *testing.T) {
	srv := tcpDaemon(t)
	for _, token := range []string{"", "wrong"} {
		c, err := NewURL(srv.URL, token)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Health(testCtx(t))
		if !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "set VERS_TOKEN") {
			t.Errorf("token %q: health: %v", token, err)
		}
		_, err = c.Exec(testCtx(t), "db-root", api.ExecRequest{Command: "ls"}, ExecIO{})
		if !errors.Is(err, errdefs.ErrUnauthorized) {
			t.Errorf("token %q: exec: %v", token, err)
		}
	}
}

func TestURLNothingAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewURL("http://"+addr, testToken)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Health(testCtx(t))
	if !errors.Is(err, ErrDaemonDown) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("health of nothing: %v", err)
	}
	_, err = c.Exec(testCtx(t), "vm", api.ExecRequest{Command: "true"}, ExecIO{})
	if !errors.Is(err, ErrDaemonDown) {
		t.Fatalf("exec of nothing: %v", err)
	}
}

func TestNewURLRefusals(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:7777", "ftp://h:1", "http://", "http://u:p@h:1", "http://h:1/?x=1", "unix:///tmp/s"} {
		if _, err := NewURL(u, ""); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("NewURL(%q) = %v; want invalid", u, err)
		}
	}
}
