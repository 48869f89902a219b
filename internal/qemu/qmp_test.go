package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeQMP is a QMP server on a unix socket that serves one client with a
// handler per command, behaving as QEMU does: greeting, capabilities
// negotiation, then replies that echo the command's id.
type fakeQMP struct {
	path string
	// handle answers one command; it may write events first. Returning ""
	// sends no reply.
	handle func(conn *net.UnixConn, cmd fakeCmd) string
	got    chan fakeCmd
	// before is written ahead of the greeting (QEMU 7.2 may send an event
	// there).
	before string
}

type fakeCmd struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
	fd        int             // descriptor received with the command, or -1
}

func startFakeQMP(t *testing.T, handle func(*net.UnixConn, fakeCmd) string) *fakeQMP {
	t.Helper()
	return startFakeQMPWith(t, "", handle)
}

func startFakeQMPWith(t *testing.T, before string, handle func(*net.UnixConn, fakeCmd) string) *fakeQMP {
	t.Helper()
	f := &fakeQMP{path: filepath.Join(t.TempDir(), "qmp.sock"), handle: handle, got: make(chan fakeCmd, 100), before: before}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		f.serve(conn)
	}()
	return f
}

func (f *fakeQMP) serve(conn *net.UnixConn) {
	fmt.Fprint(conn, f.before)
	fmt.Fprint(conn, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`+"\r\n")
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	if err != nil || !strings.Contains(string(line), `"qmp_capabilities"`) {
		return
	}
	fmt.Fprint(conn, `{"return": {}}`+"\r\n")
	for {
		// Read with ReadMsgUnix so a descriptor sent with a command arrives
		// with it, as QEMU's socket chardev receives it.
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		fd := -1
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			if len(msgs) > 0 {
				if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) > 0 {
					fd = fds[0]
				}
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
			var c fakeCmd
			if json.Unmarshal([]byte(l), &c) != nil {
				return
			}
			c.fd = fd
			f.got <- c
			if reply := f.handle(conn, c); reply != "" {
				fmt.Fprintf(conn, "%s\r\n", strings.ReplaceAll(reply, "ID", string(c.ID)))
			}
		}
	}
}

// TestQMPEventBeforeGreeting: an event QEMU sends ahead of its greeting
// (seen with QEMU 7.2 when passt connects at that moment) is skipped.
func TestQMPEventBeforeGreeting(t *testing.T) {
	ev := `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NETDEV_STREAM_CONNECTED", "data": {"netdev-id": "net0"}}` + "\r\n"
	f := startFakeQMPWith(t, ev, func(conn *net.UnixConn, c fakeCmd) string {
		return `{"return": {"status": "running", "singlestep": false, "running": true}, "id": ID}`
	})
	m, err := dialMonitor(context.Background(), f.path)
	if err != nil {
		t.Fatalf("dial after an early event: %v", err)
	}
	m.close()
}

func TestQMPExecute(t *testing.T) {
	f := startFakeQMP(t, func(conn *net.UnixConn, c fakeCmd) string {
		switch c.Execute {
		case "query-status":
			// An event may arrive before any reply; it must not be taken for one.
			fmt.Fprint(conn, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`+"\r\n")
			return `{"return": {"status": "running", "singlestep": false, "running": true}, "id": ID}`
		case "echo":
			return `{"return": ` + string(c.Arguments) + `, "id": ID}`
		default:
			return `{"error": {"class": "CommandNotFound", "desc": "The command ` + c.Execute + ` has not been found"}, "id": ID}`
		}
	})
	ctx := context.Background()
	m, err := dialMonitor(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	inst := &Instance{cfg: Config{Name: "fake"}, mon: m, proc: &process{pidfd: -1}}

	st, err := inst.Status(ctx)
	if err != nil || st != "running" {
		t.Fatalf("Status() = %q, %v; want running", st, err)
	}
	if c := <-f.got; c.Execute != "query-status" || len(c.Arguments) != 0 {
		t.Fatalf("server got %+v, want query-status without arguments", c)
	}

	var out struct{ Value int }
	if err := inst.Execute(ctx, "echo", map[string]int{"value": 42}, &out); err != nil || out.Value != 42 {
		t.Fatalf("Execute(echo) = %+v, %v", out, err)
	}
	if c := <-f.got; string(c.Arguments) != `{"value":42}` {
		t.Fatalf("server got arguments %s", c.Arguments)
	}

	err = inst.Execute(ctx, "bogus", nil, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || !strings.Contains(qe.Desc, "bogus") {
		t.Fatalf("Execute(bogus) = %v, want *QMPError CommandNotFound", err)
	}
}

func TestQMPLateReplyIsDropped(t *testing.T) {
	release := make(chan struct{})
	var slowID string
	f := startFakeQMP(t, func(conn *net.UnixConn, c fakeCmd) string {
		switch c.Execute {
		case "slow":
			slowID = string(c.ID)
			return "" // answered later, after the caller has given up
		case "fast":
			<-release
			fmt.Fprintf(conn, `{"return": {"who": "slow"}, "id": %s}`+"\r\n", slowID)
			return `{"return": {"who": "fast"}, "id": ID}`
		}
		return ""
	})
	m, err := dialMonitor(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.execute(ctx, "slow", nil, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow command = %v, want deadline exceeded", err)
	}
	close(release)
	var r struct{ Who string }
	if err := m.execute(context.Background(), "fast", nil, nil, &r); err != nil || r.Who != "fast" {
		t.Fatalf("fast command got reply %+v, %v; the late reply to another command leaked in", r, err)
	}
}

func TestQMPDisconnect(t *testing.T) {
	f := startFakeQMP(t, func(conn *net.UnixConn, c fakeCmd) string {
		conn.Close() // QEMU exiting mid-command
		return ""
	})
	m, err := dialMonitor(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if err := m.execute(context.Background(), "quit", nil, nil, nil); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("execute on a closed connection = %v, want ErrDisconnected", err)
	}
	if err := m.execute(context.Background(), "query-status", nil, nil, nil); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("second execute = %v, want ErrDisconnected", err)
	}
}

func TestQMPHandshakeTimeout(t *testing.T) {
	// A socket that accepts but never greets: QEMU does this to a second
	// client while another one is connected.
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := dialMonitor(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dialMonitor = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("dialMonitor took %v despite a 100ms deadline", d)
	}
}

func TestQMPNotAServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			fmt.Fprint(c, "hello\n")
			c.Close()
		}
	}()
	if _, err := dialMonitor(context.Background(), path); err == nil || !strings.Contains(err.Error(), "not a QMP server") {
		t.Fatalf("dialMonitor = %v, want 'not a QMP server'", err)
	}
}

func TestQMPExecuteWithFile(t *testing.T) {
	f := startFakeQMP(t, func(conn *net.UnixConn, c fakeCmd) string {
		if c.fd < 0 {
			return `{"error": {"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}, "id": ID}`
		}
		// Prove the descriptor is the caller's file: write through it.
		n, err := unix.Write(c.fd, []byte("via fd"))
		unix.Close(c.fd)
		if err != nil || n != 6 {
			return `{"error": {"class": "GenericError", "desc": "write failed"}, "id": ID}`
		}
		return `{"return": {}, "id": ID}`
	})
	ctx := context.Background()
	m, err := dialMonitor(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	inst := &Instance{cfg: Config{Name: "fake"}, mon: m, proc: &process{pidfd: -1}}

	file, err := os.Create(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := inst.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "migrate"}, file, nil); err != nil {
		t.Fatalf("ExecuteWithFile = %v", err)
	}
	if c := <-f.got; c.Execute != "getfd" || string(c.Arguments) != `{"fdname":"migrate"}` {
		t.Fatalf("server got %+v", c)
	}
	b, _ := os.ReadFile(file.Name())
	if string(b) != "via fd" {
		t.Fatalf("file holds %q: the descriptor did not reach the server", b)
	}
	// Without a file the same command must not pretend to carry one.
	var qe *QMPError
	if err := inst.Execute(ctx, "getfd", map[string]string{"fdname": "x"}, nil); !errors.As(err, &qe) {
		t.Fatalf("getfd without a file = %v, want the server's QMPError", err)
	}
	if err := inst.ExecuteWithFile(ctx, "getfd", nil, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ExecuteWithFile(nil file) = %v, want ErrInvalid", err)
	}
}

func TestExecuteAfterClose(t *testing.T) {
	f := startFakeQMP(t, func(*net.UnixConn, fakeCmd) string { return `{"return": {}, "id": ID}` })
	m, err := dialMonitor(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	inst := &Instance{cfg: Config{Name: "fake"}, mon: m, proc: &process{pidfd: -1}}
	if err := inst.Execute(context.Background(), "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inst.Execute(context.Background(), "cont", nil, nil); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Execute after Close = %v, want ErrDisconnected", err)
	}
}
