package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/agent"
	"vers/internal/errdefs"
)

// guestTunnels is a domain with one VM, "vm1", whose guest is a real agent
// server in this process: its connections are made on this host's
// loopback.
type guestTunnels struct{ c *agent.Client }

func (g guestTunnels) DialTCP(ctx context.Context, ref, addr string) (TunnelConn, error) {
	if ref != "vm1" {
		return nil, fmt.Errorf("vm %q: %w", ref, errdefs.ErrNotFound)
	}
	conn, err := g.c.DialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, nil
}

func tunnelServer(t *testing.T) *client.Client {
	t.Helper()
	host, guest := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		agent.NewServer(agent.ServerConfig{HomeDir: t.TempDir()}).ServeConn(ctx, guest)
	}()
	ac, err := agent.NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ac.Close(); cancel(); <-done })
	s := &Server{tunnels: guestTunnels{ac}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return client.New(serveOnSocket(t, s))
}

// serveTCP serves each connection on a loopback port with handle: the
// server "in the guest".
func serveTCP(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func openTunnel(t *testing.T, c *client.Client, port int) client.TunnelConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tc, err := c.Tunnel(ctx, "vm1", "", port)
	if err != nil {
		t.Fatalf("tunnel to port %d: %v", port, err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

// TestTunnelRoute: connections at once, each a request half-closed and its
// whole answer, and an orderly end.
func TestTunnelRoute(t *testing.T) {
	c := tunnelServer(t)
	port := serveTCP(t, func(c net.Conn) {
		b, err := io.ReadAll(c)
		if err == nil {
			c.Write(b)
		}
	})
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := openTunnel(t, c, port)
			want := bytes.Repeat(fmt.Appendf(nil, "%d:", i), 100<<10)
			go func() {
				tc.Write(want)
				tc.CloseWrite()
			}()
			got, err := io.ReadAll(tc)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("connection %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
				return
			}
			if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("connection %d: end: %v; want an orderly one", i, err)
			}
		}()
	}
	wg.Wait()
}

// TestTunnelRefusals: what cannot be connected is an API error, before any
// upgrade.
func TestTunnelRefusals(t *testing.T) {
	c := tunnelServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tests := []struct {
		ref, host string
		port      int
		code      string
		says      string
	}{
		{"vm1", "", free, api.CodeUnavailable, "refused"},
		{"vm1", "", 0, api.CodeInvalid, "1-65535"},
		{"vm1", "", 65536, api.CodeInvalid, "1-65535"},
		{"vm2", "", 80, api.CodeNotFound, "vm2"},
	}
	for _, tt := range tests {
		_, err := c.Tunnel(context.Background(), tt.ref, tt.host, tt.port)
		var e *client.Error
		if !errors.As(err, &e) || e.Code != tt.code || !strings.Contains(e.Message, tt.says) {
			t.Errorf("tunnel %s %s:%d: %v; want %s saying %q", tt.ref, tt.host, tt.port, err, tt.code, tt.says)
		}
	}
}

// TestTunnelResetInGuest: a connection reset in the VM reaches the client
// as a reset, with the reason.
func TestTunnelResetInGuest(t *testing.T) {
	c := tunnelServer(t)
	port := serveTCP(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 5))
		c.(*net.TCPConn).SetLinger(0)
	})
	tc := openTunnel(t, c, port)
	tc.Write([]byte("hello"))
	_, err := io.ReadAll(tc)
	if !errors.Is(err, client.ErrTunnelReset) || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read: %v; want a reset", err)
	}
}

// TestTunnelClientGoes: a client that goes away resets the connection in
// the VM: a server that would send forever stops.
func TestTunnelClientGoes(t *testing.T) {
	c := tunnelServer(t)
	ended := make(chan struct{})
	port := serveTCP(t, func(c net.Conn) {
		defer close(ended)
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	tc := openTunnel(t, c, port)
	if _, err := io.ReadFull(tc, make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server in the guest still sends after the client went away")
	}
}
