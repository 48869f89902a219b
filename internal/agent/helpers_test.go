package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// recordingSystem records sync requests instead of changing the test machine.
type recordingSystem struct {
	mu       sync.Mutex
	time     time.Time
	entropy  []byte
	hostname string
	machine  string
	resets   int
}

func (r *recordingSystem) SetTime(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.time = t
	return nil
}

func (r *recordingSystem) AddEntropy(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entropy = append([]byte(nil), b...)
	return nil
}

func (r *recordingSystem) SetHostname(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hostname = name
	return nil
}

func (r *recordingSystem) SetMachineID(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.machine = id
	return nil
}

func (r *recordingSystem) ResetTCP() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets++
	return 0, nil
}

type fixture struct {
	srv  *Server
	sys  *recordingSystem
	home string
	sock string
}

// newFixture runs a real server behind a unix socket, the way QEMU's chardev
// is reached from the host, and returns a connected client.
func newFixture(t *testing.T) (*fixture, *Client) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	dir := t.TempDir()
	f := &fixture{sys: &recordingSystem{}, home: dir, sock: filepath.Join(dir, "agent.sock")}
	f.srv = NewServer(ServerConfig{System: f.sys, HomeDir: dir, Logf: t.Logf})
	f.srv.Ready()
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.srv.ServeConn(ctx, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
	})
	c := dial(t, f.sock)
	return f, c
}

func dial(t *testing.T, sock string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type output struct {
	stdout, stderr string
	res            Result
	err            error
}

// run starts req, feeds stdin, and collects both outputs on separate goroutines.
func run(t *testing.T, c *Client, req ExecRequest, stdin string) output {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Start(ctx, req)
	if err != nil {
		t.Fatalf("start %+v: %v", req, err)
	}
	defer p.Close()
	var out, errb bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&out, p.Stdout()) }()
	go func() { defer wg.Done(); io.Copy(&errb, p.Stderr()) }()
	if stdin != "" {
		io.WriteString(p.Stdin(), stdin)
	}
	p.Stdin().Close()
	res, err := p.Wait()
	wg.Wait()
	return output{stdout: out.String(), stderr: errb.String(), res: res, err: err}
}

// fakePort behaves like a guest's virtio-serial port: it stays open while
// hosts come and go; without a host, Read returns io.EOF and Write blocks.
type fakePort struct {
	mu       sync.Mutex
	guest    net.Conn      // guest end of the current host connection
	changed  chan struct{} // closed whenever guest or the deadline changes
	deadline time.Time
}

func newFakePort() *fakePort { return &fakePort{changed: make(chan struct{})} }

func (p *fakePort) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// connect attaches a new host and returns its end.
func (p *fakePort) connect() net.Conn {
	g, h := net.Pipe()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.guest != nil {
		panic("host already connected")
	}
	g.SetDeadline(p.deadline)
	p.guest = g
	p.notifyLocked()
	return &fakeHost{Conn: h, port: p, guest: g}
}

// swap attaches a new host in place of the current one without the guest
// seeing a disconnect, as a branch child's port does: its guest resumes
// connected, but to a new host.
func (p *fakePort) swap() net.Conn {
	g, h := net.Pipe()
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.guest
	g.SetDeadline(p.deadline)
	p.guest = g
	p.notifyLocked()
	if old != nil {
		// The old host's end dies with it; a read blocked on it moves on.
		old.SetReadDeadline(time.Unix(1, 0))
	}
	return &fakeHost{Conn: h, port: p, guest: g}
}

type fakeHost struct {
	net.Conn
	port  *fakePort
	guest net.Conn
}

func (h *fakeHost) Close() error {
	h.port.drop(h.guest)
	return h.Conn.Close()
}

func (p *fakePort) drop(g net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.guest == g {
		p.guest = nil
		p.notifyLocked()
	}
}

func (p *fakePort) current() (net.Conn, chan struct{}, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.guest, p.changed, p.deadline
}

func (p *fakePort) HostConnected() (bool, error) {
	g, _, _ := p.current()
	return g != nil, nil
}

func (p *fakePort) Read(b []byte) (int, error) {
	for {
		g, _, _ := p.current()
		if g == nil {
			return 0, io.EOF
		}
		n, err := g.Read(b)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
			p.drop(g)
			return n, io.EOF
		}
		if now, _, _ := p.current(); err != nil && n == 0 && now != g && now != nil {
			continue // swapped: the port goes on with the new host's bytes
		}
		return n, err
	}
}

func (p *fakePort) Write(b []byte) (int, error) {
	for {
		g, changed, deadline := p.current()
		if g == nil {
			var timeout <-chan time.Time
			if !deadline.IsZero() {
				d := time.Until(deadline)
				if d <= 0 {
					return 0, os.ErrDeadlineExceeded
				}
				timer := time.NewTimer(d)
				defer timer.Stop()
				timeout = timer.C
			}
			select {
			case <-changed:
				continue
			case <-timeout:
				return 0, os.ErrDeadlineExceeded
			}
		}
		n, err := g.Write(b)
		if err != nil && n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)) {
			p.drop(g)
			continue
		}
		return n, err
	}
}

func (p *fakePort) SetDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deadline = t
	if p.guest != nil {
		p.guest.SetDeadline(t)
	}
	p.notifyLocked()
	return nil
}

var _ Port = (*fakePort)(nil)

func netListen(sock string) (net.Listener, error) { return net.Listen("unix", sock) }

func readProc(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	return string(b), err
}
