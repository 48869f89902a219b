package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vers/internal/errdefs"
)

// listen serves each connection on a loopback port with handle, which
// stands for a server inside the guest (the fixture's guest is this
// process).
func listen(t *testing.T, handle func(net.Conn)) string {
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
	return ln.Addr().String()
}

// echoUntilEOF answers like an HTTP/1.0 server: it reads the whole request
// (to the client's half-close), then writes it back and closes.
func echoUntilEOF(c net.Conn) {
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	c.Write(b)
}

func dialGuest(t *testing.T, c *Client, addr string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.DialTCP(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestDialHalfClose: many connections at once, each its own stream; a
// request sent and half-closed gets its whole answer, and the connection
// then ends in order.
func TestDialHalfClose(t *testing.T) {
	_, c := newFixture(t)
	addr := listen(t, echoUntilEOF)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := dialGuest(t, c, addr)
			// Larger than a chunk and a stream window, distinct per connection.
			want := bytes.Repeat(fmt.Appendf(nil, "connection %d;", i), 200<<10/14)
			go func() {
				conn.Write(want)
				conn.CloseWrite()
			}()
			got, err := io.ReadAll(conn)
			switch {
			case err != nil:
				errs <- fmt.Errorf("connection %d: read: %v", i, err)
				return
			case !bytes.Equal(got, want):
				errs <- fmt.Errorf("connection %d: got %d bytes, want %d", i, len(got), len(want))
				return
			}
			if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				errs <- fmt.Errorf("connection %d: end of connection: %d, %v; want an orderly end", i, n, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDialServerClosesFirst: a server that speaks first and closes is
// read to its end, and the client can still finish its side.
func TestDialServerClosesFirst(t *testing.T) {
	_, c := newFixture(t)
	addr := listen(t, func(c net.Conn) { io.WriteString(c, "220 hello\r\n") })
	conn := dialGuest(t, c, addr)
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "220 hello\r\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("end of connection: %v; want io.EOF", err)
	}
}

// TestDialRefused: a port nobody listens on is an error of its kind, the
// session goes on, and so do other connections.
func TestDialRefused(t *testing.T) {
	_, c := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	_, err = c.DialTCP(context.Background(), free)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial %s: %v; want refused, unavailable", free, err)
	}
	for _, bad := range []string{"", "127.0.0.1", ":80", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http"} {
		if _, err := c.DialTCP(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("dial %q: %v; want invalid", bad, err)
		}
	}
	conn := dialGuest(t, c, listen(t, echoUntilEOF))
	conn.Write([]byte("still"))
	conn.CloseWrite()
	if got, err := io.ReadAll(conn); err != nil || string(got) != "still" {
		t.Fatalf("after the failures: %q, %v", got, err)
	}
}

// TestDialHostCloses: the host closing a connection in the middle resets
// it in the guest: a server that would send forever stops.
func TestDialHostCloses(t *testing.T) {
	_, c := newFixture(t)
	ended := make(chan error, 1)
	addr := listen(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				ended <- err
				return
			}
		}
	})
	conn := dialGuest(t, c, addr)
	if _, err := io.ReadFull(conn, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server in the guest still sends after the host closed the connection")
	}
}

// TestDialGuestResets: a server that resets its connection resets the
// host's, and writes on it fail instead of blocking.
func TestDialGuestResets(t *testing.T) {
	_, c := newFixture(t)
	addr := listen(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 5))
		c.(*net.TCPConn).SetLinger(0)
	})
	conn := dialGuest(t, c, addr)
	conn.Write([]byte("hello"))
	if _, err := io.ReadAll(conn); !errors.Is(err, ErrReset) {
		t.Fatalf("read: %v; want a reset", err)
	}
	big := make([]byte, 4<<20)
	if _, err := conn.Write(big); err == nil {
		t.Fatal("a write after the reset succeeded")
	}
}

// TestDialSessionEnds: a connection whose session ends fails as closed.
func TestDialSessionEnds(t *testing.T) {
	_, c := newFixture(t)
	addr := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	conn := dialGuest(t, c, addr)
	c.Close()
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after the session ended: %v; want ErrClosed", err)
	}
}

// TestDialSlowGuest: a guest that needs longer than one hello attempt to
// answer each new connection (a child among many starting at once) is
// waited for longer at each attempt, and answers one.
func TestDialSlowGuest(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	srv := NewServer(ServerConfig{HomeDir: dir, Logf: t.Logf})
	srv.Ready()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := helloTimeout + time.Second // more than the first attempt waits
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				select { // the guest's work to begin a session
				case <-time.After(slow):
				case <-ctx.Done():
					conn.Close()
					return
				}
				srv.ServeConn(ctx, conn)
			}()
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, 4*slow)
	defer dcancel()
	c, err := Dial(dctx, sock)
	if err != nil {
		t.Fatalf("dial a slow guest: %v (after %d connections)", err, accepted.Load())
	}
	c.Close()
}
