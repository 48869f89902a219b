package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
)

func TestParseTunnelSpec(t *testing.T) {
	tests := []struct {
		in   string
		want tunnelSpec
		bad  string // in the error
	}{
		{in: "8080:80", want: tunnelSpec{Local: 8080, Remote: 80}},
		{in: "0:5432", want: tunnelSpec{Local: 0, Remote: 5432}},
		{in: "9000:10.0.2.2:9000", want: tunnelSpec{Local: 9000, Host: "10.0.2.2", Remote: 9000}},
		{in: "1:db.internal:65535", want: tunnelSpec{Local: 1, Host: "db.internal", Remote: 65535}},
		{in: "7000:[::1]:7000", want: tunnelSpec{Local: 7000, Host: "::1", Remote: 7000}},
		{in: "80", bad: "no REMOTE port"},
		{in: "8080:0", bad: "REMOTE port \"0\""},
		{in: "8080:65536", bad: "REMOTE port"},
		{in: "65536:80", bad: "LOCAL port \"65536\""},
		{in: "-1:80", bad: "LOCAL port"},
		{in: ":80", bad: "LOCAL port \"\""},
		{in: "80:", bad: "REMOTE port \"\""},
		{in: "+80:80", bad: "LOCAL port"},
		{in: "80:http", bad: "REMOTE port \"http\""},
		{in: "80::80", bad: "no host name"},
		{in: "80:a b:80", bad: "no host name"},
		{in: "80:::1:80", bad: "no host name"},
	}
	for _, tt := range tests {
		got, err := parseTunnelSpec(tt.in)
		switch {
		case tt.bad == "" && (err != nil || got != tt.want):
			t.Errorf("%q: %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad) || ExitCode(err) != ExitUsage):
			t.Errorf("%q: %+v, %v; want a usage error saying %q", tt.in, got, err, tt.bad)
		}
	}
}

func TestTunnelUsage(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"tunnel"},
		{"tunnel", "80"},
		{"tunnel", "db-root", "8080:0"},
		{"tunnel", "db-root", "8080:80", "extra"},
		{"tunnel", "", "8080:80"},
	} {
		if code := e.run(args...); code != ExitUsage {
			t.Errorf("%v: exit %d (%s); want %d", args, code, e.errOut, ExitUsage)
		}
	}
}

// guestServer stands for a server inside the VM: it answers each request
// (read to the client's half-close) with "PORT:" and the request.
func guestServer(t *testing.T) string {
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
				b, err := io.ReadAll(c)
				if err == nil {
					fmt.Fprintf(c, "reply:%s", b)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startTunnel runs the tunnel of opts until the test ends, and returns
// where it listens and its outcome.
func startTunnel(t *testing.T, e *env, vm, spec, format string) (string, *tunnelRun, context.CancelFunc) {
	t.Helper()
	s, err := parseTunnelSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	o := &TunnelOptions{f: e.f, Client: func(context.Context) (Daemon, error) { return e.d, nil }, VM: vm, Spec: s, Format: format,
		listening: func(addr string) { ready <- addr }}
	ctx, cancel := context.WithCancel(context.Background())
	run := &tunnelRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = runTunnel(ctx, o)
	}()
	t.Cleanup(func() {
		cancel()
		<-run.done
	})
	select {
	case addr := <-ready:
		return addr, run, cancel
	case <-run.done:
		select {
		case addr := <-ready: // and ended already
			return addr, run, cancel
		default:
			t.Fatalf("tunnel ended before it listened: %v", run.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel did not listen")
	}
	return "", nil, nil
}

// tunnelRun is the outcome of a tunnel: err, once done is closed.
type tunnelRun struct {
	done chan struct{}
	err  error
}

func (r *tunnelRun) wait() error {
	<-r.done
	return r.err
}

// exchange sends msg on a new connection to addr, half-closes and reads
// the whole answer.
func exchange(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestTunnelForwards: each connection is forwarded on its own to the VM,
// at once; json says where it listens; Ctrl-C ends it with exit 7.
func TestTunnelForwards(t *testing.T) {
	e := newEnv(t)
	server := guestServer(t)
	var mu sync.Mutex
	var asked []string
	e.d.tunnel = func(ctx context.Context, ref, host string, port int) (client.TunnelConn, error) {
		mu.Lock()
		asked = append(asked, fmt.Sprintf("%s %s:%d", ref, host, port))
		mu.Unlock()
		c, err := net.Dial("tcp", server)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	addr, done, cancel := startTunnel(t, e, "db-root", "0:10.0.2.2:5432", "json")
	var res api.TunnelResult
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil {
		t.Fatalf("json output %q: %v", e.out, err)
	}
	if res.Local != addr || res.Port == 0 || !strings.HasPrefix(res.Local, "127.0.0.1:") || res.VMID != rootID || res.Alias != "db-root" ||
		res.RemoteHost != "10.0.2.2" || res.RemotePort != 5432 {
		t.Fatalf("json output %+v; listening on %s", res, addr)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := strings.Repeat(fmt.Sprintf("%d,", i), 10000)
			got, err := exchange(addr, msg)
			if err != nil || got != "reply:"+msg {
				t.Errorf("connection %d: %d bytes, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	if len(asked) != 20 || asked[0] != rootID+" 10.0.2.2:5432" {
		t.Errorf("asked %d tunnels, first %q", len(asked), asked[0])
	}
	mu.Unlock()
	cancel()
	if err := done.wait(); ExitCode(err) != ExitCancelled {
		t.Fatalf("after Ctrl-C: %v, exit %d; want %d", err, ExitCode(err), ExitCancelled)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still listening after the end")
	}
}

// TestTunnelRefusedConnection: a connection the VM cannot make is said
// once and closed; the tunnel goes on.
func TestTunnelRefusedConnection(t *testing.T) {
	e := newEnv(t)
	server := guestServer(t)
	var mu sync.Mutex
	calls := 0
	e.d.tunnel = func(ctx context.Context, ref, host string, port int) (client.TunnelConn, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			return nil, &client.Error{Status: 503, Code: api.CodeUnavailable, Message: "vm head-vm: connection to 127.0.0.1:81 refused in the VM: nothing listens there"}
		}
		c, err := net.Dial("tcp", server)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	addr, done, cancel := startTunnel(t, e, "", "0:81", "text")
	if !strings.HasPrefix(e.out.String(), "forwarding "+addr+" -> head-vm:81 (Ctrl-C to stop)") {
		t.Errorf("announced %q", e.out)
	}
	if got, err := exchange(addr, "first"); got != "" {
		t.Errorf("refused connection answered %q, %v", got, err)
	}
	if got, err := exchange(addr, "second"); err != nil || got != "reply:second" {
		t.Errorf("after a refusal: %q, %v", got, err)
	}
	cancel()
	done.wait()
	if n := strings.Count(e.errOut.String(), "refused in the VM"); n != 1 {
		t.Errorf("stderr says the refusal %d times: %q", n, e.errOut)
	}
}

// TestTunnelVMGone: a tunnel ends, saying so, when its VM is killed or
// dies; one to a VM that is not running does not start.
func TestTunnelVMGone(t *testing.T) {
	tests := []struct {
		event api.Event
		says  string
	}{
		{api.Event{Type: api.EventVMKilled, VMID: rootID}, "vm db-root was killed; the tunnel on"},
		{api.Event{Type: api.EventVMState, VM: &api.VM{ID: rootID, State: api.StateDead, StateReason: "exited"}}, "vm db-root died (exited)"},
		{api.Event{Type: api.EventHello, VMs: []api.VM{{ID: headID}}}, "was killed"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		e.d.streams = []fakeStream{{events: []api.Event{
			{Type: api.EventHello, VMs: e.d.vms},
			{Type: api.EventVMKilled, VMID: otherID},
			tt.event,
		}}}
		_, done, _ := startTunnel(t, e, "db-root", "0:80", "text")
		select {
		case <-done.done:
			err := done.err
			if err == nil || !strings.Contains(message(err), tt.says) || ExitCode(err) != ExitError {
				t.Errorf("%s: %v, exit %d; want exit 1 saying %q", tt.event.Type, err, ExitCode(err), tt.says)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the tunnel goes on", tt.event.Type)
		}
	}
	e := newEnv(t)
	e.d.vms[1].State = api.StatePaused
	err := runTunnel(context.Background(), &TunnelOptions{f: e.f, Client: func(context.Context) (Daemon, error) { return e.d, nil }, VM: "db-root", Spec: tunnelSpec{Remote: 80}})
	if ExitCode(err) != ExitConflict || !strings.Contains(err.Error(), "vers resume") {
		t.Errorf("paused VM: %v; want a conflict saying how to resume it", err)
	}
}

// TestPipeReset: a reset on the VM's side resets the local client's
// connection, and is said.
func TestPipeReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c.(*net.TCPConn)
		}
	}()
	user, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	local := <-accepted
	remote := &resetConn{data: "partial"}
	if err := pipe(local, remote); !errors.Is(err, client.ErrTunnelReset) {
		t.Fatalf("pipe: %v; want the reset", err)
	}
	b, err := io.ReadAll(user)
	if string(b) != "partial" || err == nil {
		t.Fatalf("the local client read %q, %v; want the data, then a reset", b, err)
	}
}

// resetConn sends data, then is reset.
type resetConn struct {
	data string
	sent bool
}

func (r *resetConn) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, r.data), nil
	}
	return 0, fmt.Errorf("connection to 127.0.0.1:80 in the VM reset: %w", client.ErrTunnelReset)
}
func (r *resetConn) Write(p []byte) (int, error) { return len(p), nil }
func (r *resetConn) CloseWrite() error           { return nil }
func (r *resetConn) Close() error                { return nil }
