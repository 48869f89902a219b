package vm

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"vers/internal/errdefs"
)

// TestDialTCP: a connection made in a running VM carries bytes both ways;
// one nothing answers is unavailable, naming the VM; a paused VM is
// refused saying how to resume it; the connection ends with its context.
// The fake guest is this process: its loopback is the test's.
func TestDialTCP(t *testing.T) {
	e := newEnv(t, true)
	e.create("web")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()

	ctx, cancel := context.WithCancel(e.ctx())
	conn, err := e.m.DialTCP(ctx, "web", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	cancel()
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("the connection outlived its context")
	}

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	_, err = e.m.DialTCP(e.ctx(), "web", addr)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "vm web") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial %s, where nothing listens: %v", addr, err)
	}

	e.pause("web")
	if _, err := e.m.DialTCP(e.ctx(), "web", ln.Addr().String()); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "`vers resume web`") {
		t.Fatalf("dial in a paused VM: %v", err)
	}
}
