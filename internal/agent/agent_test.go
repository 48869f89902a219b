package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestExecOutputsAndExitCodes(t *testing.T) {
	f, c := newFixture(t)
	sub := filepath.Join(f.home, "sub")
	os.Mkdir(sub, 0o755)
	plain := filepath.Join(f.home, "plain")
	os.WriteFile(plain, []byte("data"), 0o644)
	tests := []struct {
		name      string
		req       ExecRequest
		stdin     string
		stdout    string
		stderrHas string
		exit      int
		signal    string
	}{
		{name: "apart", req: ExecRequest{Shell: "echo out; echo err >&2; exit 3"}, stdout: "out\n", stderrHas: "err\n", exit: 3},
		{name: "argv", req: ExecRequest{Argv: []string{"echo", "a b", "c"}}, stdout: "a b c\n"},
		{name: "env", req: ExecRequest{Shell: `echo "$FOO $HOME $LANG"`, Env: []string{"FOO=bar", "LANG=C"}}, stdout: "bar " + f.home + " C\n"},
		{name: "default dir", req: ExecRequest{Argv: []string{"pwd"}}, stdout: f.home + "\n"},
		{name: "dir", req: ExecRequest{Argv: []string{"pwd"}, Dir: sub}, stdout: sub + "\n"},
		{name: "stdin", req: ExecRequest{Argv: []string{"cat"}}, stdin: "hello\nworld", stdout: "hello\nworld"},
		{name: "missing command", req: ExecRequest{Argv: []string{"no-such-command-vers"}}, stderrHas: "command not found", exit: 127},
		{name: "missing path", req: ExecRequest{Argv: []string{"/no/such/program"}}, stderrHas: "no such file", exit: 127},
		{name: "missing in shell", req: ExecRequest{Shell: "no-such-command-vers"}, stderrHas: "not found", exit: 127},
		{name: "not executable", req: ExecRequest{Argv: []string{plain}}, stderrHas: "permission denied", exit: 126},
		{name: "bad dir", req: ExecRequest{Argv: []string{"true"}, Dir: "/no/such/dir"}, stderrHas: "/no/such/dir", exit: 126},
		{name: "killed", req: ExecRequest{Shell: "kill -9 $$"}, exit: 137, signal: "SIGKILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := run(t, c, tt.req, tt.stdin)
			if o.err != nil {
				t.Fatal(o.err)
			}
			if o.stdout != tt.stdout {
				t.Errorf("stdout = %q, want %q", o.stdout, tt.stdout)
			}
			if !strings.Contains(strings.ToLower(o.stderr), strings.ToLower(tt.stderrHas)) || (tt.stderrHas == "" && o.stderr != "") {
				t.Errorf("stderr = %q, want it to contain %q", o.stderr, tt.stderrHas)
			}
			if o.res.ExitCode != tt.exit || o.res.Signal != tt.signal || o.res.TimedOut {
				t.Errorf("result = %+v, want exit %d signal %q", o.res, tt.exit, tt.signal)
			}
		})
	}
}

func TestExecInvalidRequest(t *testing.T) {
	_, c := newFixture(t)
	_, err := c.Start(context.Background(), ExecRequest{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty request: err = %v, want ErrInvalid", err)
	}
	_, err = c.Start(context.Background(), ExecRequest{Argv: []string{"true"}, Env: []string{"NOEQUALS"}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad env: err = %v, want ErrInvalid", err)
	}
}

func TestExecTimeout(t *testing.T) {
	_, c := newFixture(t)
	start := time.Now()
	o := run(t, c, ExecRequest{Shell: "echo started; sleep 30", Timeout: 300 * time.Millisecond}, "")
	if o.err != nil {
		t.Fatal(o.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	if !o.res.TimedOut || o.res.ExitCode != 137 || o.res.Signal != "SIGKILL" || o.stdout != "started\n" {
		t.Fatalf("got %+v stdout %q", o.res, o.stdout)
	}
}

func TestExecSignal(t *testing.T) {
	_, c := newFixture(t)
	ctx := context.Background()
	p, err := c.Start(ctx, ExecRequest{Shell: "echo ready; sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	line := make([]byte, 6)
	if _, err := io.ReadFull(p.Stdout(), line); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr())
	io.Copy(io.Discard, p.Stdout())
	res, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 143 || res.Signal != "SIGTERM" {
		t.Fatalf("got %+v, want 143 SIGTERM", res)
	}
}

// A background child holding stdout open must not hold the exit back.
func TestExecBackgroundChildDoesNotBlockExit(t *testing.T) {
	_, c := newFixture(t)
	start := time.Now()
	o := run(t, c, ExecRequest{Shell: "sleep 20 & echo done"}, "")
	if o.err != nil || o.stdout != "done\n" || o.res.ExitCode != 0 {
		t.Fatalf("got %+v", o)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("exit waited for the background child: %v", d)
	}
}

func TestExecLargeOutput(t *testing.T) {
	_, c := newFixture(t)
	const size = 100 << 20
	ctx := context.Background()
	start := time.Now()
	// 100 MB through cat: stdin and stdout at once; stderr gets some too.
	p, err := c.Start(ctx, ExecRequest{Shell: "cat; head -c 1000000 /dev/zero >&2"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var nout, nerr int64
	wg.Add(3)
	go func() { defer wg.Done(); nout, _ = io.Copy(io.Discard, p.Stdout()) }()
	go func() { defer wg.Done(); nerr, _ = io.Copy(io.Discard, p.Stderr()) }()
	go func() {
		defer wg.Done()
		io.Copy(p.Stdin(), io.LimitReader(zeroReader{}, size))
		p.Stdin().Close()
	}()
	res, err := p.Wait()
	wg.Wait()
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("wait: %+v %v", res, err)
	}
	if nout != size || nerr != 1000000 {
		t.Fatalf("stdout %d bytes, stderr %d bytes", nout, nerr)
	}
	d := time.Since(start)
	t.Logf("100 MB through cat in %v (%.0f MB/s)", d, float64(size)/1e6/d.Seconds())
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// Reading stdout to the end before stderr must work while stderr is small
// (the per-stream window holds it), as with pipes.
func TestExecSequentialReads(t *testing.T) {
	_, c := newFixture(t)
	p, err := c.Start(context.Background(), ExecRequest{Shell: "echo e1 >&2; head -c 3000000 /dev/zero; echo e2 >&2"})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, p.Stdout())
	e, _ := io.ReadAll(p.Stderr())
	res, err := p.Wait()
	if err != nil || n != 3000000 || string(e) != "e1\ne2\n" || res.ExitCode != 0 {
		t.Fatalf("n=%d stderr=%q res=%+v err=%v", n, e, res, err)
	}
}

func TestExecConcurrent(t *testing.T) {
	_, c := newFixture(t)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := run(t, c, ExecRequest{Shell: fmt.Sprintf("sleep 1; echo %d", i)}, "")
			if o.err != nil || o.stdout != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("exec %d: %+v", i, o)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		o := run(t, c, ExecRequest{Shell: "sleep 1; echo tty", TTY: true}, "")
		if o.err != nil || o.stdout != "tty\r\n" {
			errs <- fmt.Errorf("tty: %+v", o)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("4 one-second processes took %v: they did not run concurrently", d)
	}
}

// waitFor reads r until its accumulated output contains want.
func waitFor(t *testing.T, r io.Reader, acc *bytes.Buffer, want string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for !strings.Contains(acc.String(), want) {
			n, err := r.Read(buf)
			acc.Write(buf[:n])
			if err != nil {
				done <- fmt.Errorf("%w before %q (got %q)", err, want, acc.String())
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func TestPTY(t *testing.T) {
	_, c := newFixture(t)
	o := run(t, c, ExecRequest{Shell: "stty size; echo $TERM; test -t 0 && echo tty", TTY: true, Rows: 40, Cols: 100}, "")
	if o.err != nil || o.res.ExitCode != 0 {
		t.Fatalf("%+v", o)
	}
	if want := "40 100\r\nxterm-256color\r\ntty\r\n"; o.stdout != want || o.stderr != "" {
		t.Fatalf("stdout %q, want %q (stderr %q)", o.stdout, want, o.stderr)
	}
}

func TestPTYInteractive(t *testing.T) {
	_, c := newFixture(t)
	p, err := c.Start(context.Background(), ExecRequest{TTY: true, Login: true, Rows: 24, Cols: 80, Env: []string{"PS1=$ "}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var acc bytes.Buffer
	io.WriteString(p.Stdin(), "stty size\n")
	waitFor(t, p.Stdout(), &acc, "24 80")
	if err := p.Resize(50, 120); err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Stdin(), "stty size\n")
	waitFor(t, p.Stdout(), &acc, "50 120")
	// Ctrl-C interrupts the foreground job and the shell goes on.
	io.WriteString(p.Stdin(), "sleep 100; echo not-interrupted\n")
	time.Sleep(300 * time.Millisecond)
	io.WriteString(p.Stdin(), "\x03")
	io.WriteString(p.Stdin(), "echo after-$((6*7))\n")
	waitFor(t, p.Stdout(), &acc, "after-42")
	if strings.Contains(acc.String(), "\nnot-interrupted") {
		t.Fatalf("sleep was not interrupted: %q", acc.String())
	}
	io.WriteString(p.Stdin(), "exit 7\n")
	io.Copy(io.Discard, p.Stdout())
	res, err := p.Wait()
	if err != nil || res.ExitCode != 7 {
		t.Fatalf("got %+v %v", res, err)
	}
}

func TestPTYCtrlC(t *testing.T) {
	_, c := newFixture(t)
	p, err := c.Start(context.Background(), ExecRequest{Shell: "echo ready; sleep 100", TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var acc bytes.Buffer
	waitFor(t, p.Stdout(), &acc, "ready")
	time.Sleep(100 * time.Millisecond)
	io.WriteString(p.Stdin(), "\x03")
	io.Copy(io.Discard, p.Stdout())
	res, err := p.Wait()
	if err != nil || res.ExitCode != 130 || res.Signal != "SIGINT" {
		t.Fatalf("got %+v %v", res, err)
	}
}

// Closing stdin of a TTY ends input like typing Ctrl-D at a prompt.
func TestPTYStdinClose(t *testing.T) {
	_, c := newFixture(t)
	o := run(t, c, ExecRequest{Argv: []string{"cat"}, TTY: true}, "abc\n")
	if o.err != nil || o.res.ExitCode != 0 || !strings.Contains(o.stdout, "abc") {
		t.Fatalf("%+v", o)
	}
}

// Abandoning a process kills its whole group in the guest.
func TestProcessCloseKills(t *testing.T) {
	_, c := newFixture(t)
	for _, tty := range []bool{false, true} {
		p, err := c.Start(context.Background(), ExecRequest{Shell: "sleep 60 & echo $!; wait", TTY: tty})
		if err != nil {
			t.Fatal(err)
		}
		var acc bytes.Buffer
		waitFor(t, p.Stdout(), &acc, "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(acc.String()))
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		waitGone(t, pid)
	}
}

// waitGone waits until pid no longer runs (zombies count as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still running", pid)
}

func TestFiles(t *testing.T) {
	f, c := newFixture(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 100000)
	path := filepath.Join(f.home, "a/b/c.txt")
	if err := c.WriteFile(ctx, path, 0o640, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	rc, info, err := c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || info.Size != int64(len(data)) || info.Mode.Perm() != 0o640 {
		t.Fatalf("read back %d bytes, info %+v, err %v", len(got), info, err)
	}
	// Relative paths are relative to the home directory.
	if err := c.WriteFile(ctx, "rel.txt", 0, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(f.home, "rel.txt")); string(b) != "x" {
		t.Fatalf("relative write: %q", b)
	}
	// A failing source leaves the old file untouched and no temporary behind.
	err = c.WriteFile(ctx, path, 0o644, io.MultiReader(strings.NewReader("partial"), errReader{}))
	if err == nil {
		t.Fatal("write from a failing reader succeeded")
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
		t.Fatal("failed write changed the file")
	}
	waitNoTemp(t, filepath.Dir(path))

	if _, _, err := c.ReadFile(ctx, filepath.Join(f.home, "missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if _, _, err := c.ReadFile(ctx, f.home); err == nil {
		t.Fatal("reading a directory succeeded")
	}
}

func waitNoTemp(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left in %s: %v", dir, ents)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source failed") }

func TestInfoAndSync(t *testing.T) {
	f, c := newFixture(t)
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if info.Version != Version || info.Hostname != host || info.Kernel == "" || info.BootID == "" || info.Uptime <= 0 {
		t.Fatalf("info %+v", info)
	}
	now := time.Now().Add(time.Hour)
	const id = "0123456789abcdef0123456789abcdef"
	before := time.Now()
	clock, err := c.SyncClock(ctx, SyncRequest{Time: now, Entropy: []byte{1, 2, 3}, Hostname: "child-1", MachineID: id, ResetTCP: true})
	if err != nil {
		t.Fatal(err)
	}
	// This agent's clock is the test's (its System records, not sets).
	if clock.Before(before) || clock.After(time.Now()) {
		t.Errorf("the sync's reply reads the guest clock %v, outside the call [%v, %v]", clock, before, time.Now())
	}
	f.sys.mu.Lock()
	defer f.sys.mu.Unlock()
	if f.sys.time.Before(now) || f.sys.time.After(now.Add(time.Second)) || !bytes.Equal(f.sys.entropy, []byte{1, 2, 3}) ||
		f.sys.hostname != "child-1" || f.sys.machine != id || f.sys.resets != 1 {
		t.Fatalf("system got %+v", f.sys)
	}
}

// A sync sent before the guest is up waits for it, and the clock it sets
// is the host's moved on by that wait.
func TestSyncWaitsForReady(t *testing.T) {
	sys := &recordingSystem{}
	ctx := context.Background()
	srv, c := servePort(t, ServerConfig{HomeDir: t.TempDir(), System: sys})
	sent := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Sync(ctx, SyncRequest{Time: sent, Hostname: "h"}) }()
	const wait = 300 * time.Millisecond
	select {
	case err := <-done:
		t.Fatalf("sync answered before the guest was up: %v", err)
	case <-time.After(wait):
	}
	srv.Ready()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sys.mu.Lock()
	defer sys.mu.Unlock()
	// (Less the moment the request took to arrive: without the wait it
	// would be that moment only.)
	if got := sys.time.Sub(sent); got < wait/2 || got > time.Since(sent) {
		t.Fatalf("clock set %v after the host's reading, want about the %v the guest was not up", got, wait)
	}
	// Skipping a ResetTCP the host did not ask for.
	if sys.resets != 0 || sys.hostname != "h" {
		t.Fatalf("system got %+v", sys)
	}
}

func TestInfoWaitsForReady(t *testing.T) {
	ctx := context.Background()
	srv, c := servePort(t, ServerConfig{HomeDir: t.TempDir()})
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := c.Info(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("info before ready: %v", err)
	}
	srv.Ready()
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
}

// The guest survives its host going away: the session's processes die, and
// the next host gets a fresh session on the same port.
func TestHostReconnect(t *testing.T) {
	srv := NewServer(ServerConfig{HomeDir: t.TempDir(), Logf: t.Logf})
	srv.Ready()
	port := newFakePort()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.ServePort(ctx, port) }()

	for round := 0; round < 3; round++ {
		c, err := NewClient(port.connect())
		if err != nil {
			t.Fatal(err)
		}
		o := run(t, c, ExecRequest{Shell: "echo round " + strconv.Itoa(round)}, "")
		if o.err != nil || o.stdout != fmt.Sprintf("round %d\n", round) {
			t.Fatalf("round %d: %+v", round, o)
		}
		// Leave a PTY session and a plain exec running, with output pending.
		var pids []int
		for _, tty := range []bool{false, true} {
			p, err := c.Start(ctx, ExecRequest{Shell: "echo $$; exec yes", TTY: tty})
			if err != nil {
				t.Fatal(err)
			}
			var acc bytes.Buffer
			waitFor(t, p.Stdout(), &acc, "\n")
			pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(acc.String(), "\n", 2)[0]))
			if err != nil {
				t.Fatalf("pid line: %q", acc.String())
			}
			pids = append(pids, pid)
		}
		c.Close() // the host dies without a word
		for _, pid := range pids {
			waitGone(t, pid)
		}
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("ServePort returned %v", err)
	}
}

// Dial waits for a socket that appears late and an agent that answers late.
func TestDialRetries(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "late.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv := NewServer(ServerConfig{HomeDir: dir})
		ln, err := netListen(sock)
		if err != nil {
			return
		}
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		srv.ServeConn(ctx, conn)
	}()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := Dial(short, filepath.Join(dir, "never.sock")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
}

// servePort runs a server of cfg, not yet ready, on a fake port and
// returns it and a client of it; both end with the test.
func servePort(t *testing.T, cfg ServerConfig) (*Server, *Client) {
	t.Helper()
	srv := NewServer(cfg)
	port := newFakePort()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.ServePort(ctx, port)
	c, err := NewClient(port.connect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// TestExecFixedLayout: a FixedLayout process starts without address-space
// randomization, on pipes and on a PTY, and the flag never leaks to the
// processes started after it, whichever thread forks them.
func TestExecFixedLayout(t *testing.T) {
	_, c := newFixture(t)
	const show = "cat /proc/self/personality"
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fixed, tty := i%2 == 0, i%4 < 2
			o := run(t, c, ExecRequest{Shell: show, FixedLayout: fixed, TTY: tty}, "")
			want := "00000000"
			if fixed {
				want = "00040000"
			}
			if o.err != nil || strings.TrimSpace(o.stdout) != want {
				errs <- fmt.Errorf("fixed=%v tty=%v: personality %q (%v), want %s", fixed, tty, o.stdout, o.err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWithPersonalitySteps: each of the three personality calls failing in
// turn, and the function failing: the error is returned, fn runs only with
// the flag set, and the old personality is put back whenever it was changed.
func TestWithPersonalitySteps(t *testing.T) {
	defer func(p func(uint) (uint, error)) { personality = p }(personality)
	boom := errors.New("boom")
	for _, c := range []struct {
		name     string
		failCall int // 1: query, 2: set, 3: restore; 0: none
		fnErr    error
		wantFn   bool
		wantSets []uint // the personalities set, in order
		wantErr  error
	}{
		{"query", 1, nil, false, nil, boom},
		{"set", 2, nil, false, []uint{0x8 | addrNoRandomize}, boom},
		{"restore", 3, nil, true, []uint{0x8 | addrNoRandomize, 0x8}, nil},
		{"fn", 0, boom, true, []uint{0x8 | addrNoRandomize, 0x8}, boom},
		{"none", 0, nil, true, []uint{0x8 | addrNoRandomize, 0x8}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls int
			var sets []uint
			personality = func(p uint) (uint, error) {
				calls++
				if p != 0xffffffff {
					sets = append(sets, p)
				}
				if calls == c.failCall {
					return 0, boom
				}
				return 0x8, nil
			}
			ran := false
			err := withPersonality(addrNoRandomize, func() error { ran = true; return c.fnErr })
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if ran != c.wantFn {
				t.Errorf("fn ran: %v, want %v", ran, c.wantFn)
			}
			if fmt.Sprint(sets) != fmt.Sprint(c.wantSets) {
				t.Errorf("personalities set %x, want %x", sets, c.wantSets)
			}
		})
	}
}
