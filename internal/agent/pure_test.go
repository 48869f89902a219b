package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestPlanExec(t *testing.T) {
	withBash := func(file, path string) (string, bool) {
		if file == "bash" || file == "ls" {
			return "/usr/bin/" + file, true
		}
		return "", false
	}
	noBash := func(file, path string) (string, bool) { return "", false }
	tests := []struct {
		name    string
		req     ExecRequest
		look    lookFunc
		path    string
		argv    []string
		dir     string
		missing string
		err     error
	}{
		{name: "shell", req: ExecRequest{Shell: "echo hi", Argv: []string{"ignored"}}, look: withBash, path: "/usr/bin/bash", argv: []string{"bash", "-c", "echo hi"}, dir: "/root"},
		{name: "shell without bash", req: ExecRequest{Shell: "echo hi"}, look: noBash, path: "/bin/sh", argv: []string{"/bin/sh", "-c", "echo hi"}, dir: "/root"},
		{name: "argv", req: ExecRequest{Argv: []string{"ls", "-l"}, Dir: "/tmp"}, look: withBash, path: "/usr/bin/ls", argv: []string{"ls", "-l"}, dir: "/tmp"},
		{name: "absolute", req: ExecRequest{Argv: []string{"/opt/x"}}, look: noBash, path: "/opt/x", argv: []string{"/opt/x"}, dir: "/root"},
		{name: "missing", req: ExecRequest{Argv: []string{"nope"}}, look: withBash, argv: []string{"nope"}, dir: "/root", missing: "nope: command not found"},
		{name: "login", req: ExecRequest{TTY: true, Login: true, Dir: "/tmp"}, look: withBash, path: "/usr/bin/bash", argv: []string{"bash", "-l"}, dir: "/root"},
		{name: "tty shell", req: ExecRequest{TTY: true}, look: withBash, path: "/usr/bin/bash", argv: []string{"bash"}, dir: "/root"},
		{name: "nothing", req: ExecRequest{}, look: withBash, err: ErrInvalid},
		{name: "login needs tty", req: ExecRequest{Login: true}, look: withBash, err: ErrInvalid},
		{name: "empty program", req: ExecRequest{Argv: []string{""}}, look: withBash, err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planExec(tt.req, "/root", tt.look)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if p.Path != tt.path || !reflect.DeepEqual(p.Argv, tt.argv) || p.Dir != tt.dir || p.Missing != tt.missing {
				t.Fatalf("got %+v", p)
			}
		})
	}
}

func TestBuildEnv(t *testing.T) {
	env, err := buildEnv(ExecRequest{TTY: true, Term: "vt100", Env: []string{"PATH=/x", "A=1=2", "A=3"}}, "/root")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/x", "HOME=/root", "LANG=C.UTF-8", "USER=root", "LOGNAME=root", "TERM=vt100", "A=3"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %q", env)
	}
	env, _ = buildEnv(ExecRequest{}, "/root")
	if strings.Contains(strings.Join(env, " "), "TERM=") {
		t.Fatalf("TERM without a TTY: %q", env)
	}
	if _, err := buildEnv(ExecRequest{Env: []string{"=x"}}, "/root"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad entry: %v", err)
	}
}

func TestChunks(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), 100000)
	var wire bytes.Buffer
	if n, err := sendChunks(&wire, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatal(n, err)
	}
	full := wire.Bytes()
	got, err := io.ReadAll(&chunkReader{r: bytes.NewReader(full)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	// Any cut before the end marker is an error, never a short file.
	for _, cut := range []int{0, 3, 100, len(full) - 4, len(full) - 1} {
		_, err := io.ReadAll(&chunkReader{r: bytes.NewReader(full[:cut])})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: err = %v", cut, err)
		}
	}
}

func TestMessages(t *testing.T) {
	var b bytes.Buffer
	in := request{Op: opExec, ID: "x", Exec: &ExecRequest{Argv: []string{"a"}, Timeout: time.Second}}
	writeMsg(&b, in)
	b.WriteString("raw data after the header")
	var out request
	if err := readMsg(&b, &out); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v %v", out, err)
	}
	if b.String() != "raw data after the header" {
		t.Fatalf("header read consumed data: %q", b.String())
	}
	if err := readMsg(bytes.NewReader([]byte{0xff, 0, 0, 0}), &out); !errors.Is(err, ErrProtocol) {
		t.Fatalf("huge length: %v", err)
	}
}

func TestParseUptime(t *testing.T) {
	if got := parseUptime("12.34 56.78\n"); got != 12340*time.Millisecond {
		t.Fatalf("got %v", got)
	}
	if parseUptime("") != 0 || parseUptime("x") != 0 {
		t.Fatal("bad input not zero")
	}
}

func TestEntropyRequest(t *testing.T) {
	w := entropyRequest([]byte{1, 2, 3, 4, 5})
	if len(w) != 4 || w[0] != 40 || w[1] != 5 {
		t.Fatalf("header %v", w)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&w[2])), 5)
	if !bytes.Equal(b, []byte{1, 2, 3, 4, 5}) {
		t.Fatalf("payload %v", b)
	}
}

func TestResultOf(t *testing.T) {
	tests := []struct {
		ws   unix.WaitStatus
		want Result
	}{
		{0, Result{}},
		{3 << 8, Result{ExitCode: 3}},
		{9, Result{ExitCode: 137, Signal: "SIGKILL"}},
		{2 | 0x80, Result{ExitCode: 130, Signal: "SIGINT"}}, // core dumped flag
	}
	for _, tt := range tests {
		if got := resultOf(tt.ws); got != tt.want {
			t.Errorf("resultOf(%#x) = %+v, want %+v", uint32(tt.ws), got, tt.want)
		}
	}
}

// The reaper collects orphans and still hands each started process its own
// exit status. The test process becomes a subreaper so orphans come to it,
// as they come to PID 1 in a guest.
func TestReaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r := NewReaper(t.Logf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	// The shell leaves an orphan that exits later; then the shell exits 5.
	wait, err := r.start(exec.Command("/bin/sh", "-c", "(sleep 0.2; exit 9) & exit 5"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resultOf(wait()); got.ExitCode != 5 {
		t.Fatalf("status %+v, want exit 5", got)
	}
	// Many quick processes at once: every status reaches its owner.
	waits := make([]func() unix.WaitStatus, 20)
	for i := range waits {
		if waits[i], err = r.start(exec.Command("/bin/sh", "-c", "exit "+string(rune('0'+i%10)))); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range waits {
		if got := resultOf(w()); got.ExitCode != i%10 {
			t.Fatalf("process %d: %+v", i, got)
		}
	}
	// The orphan is reaped too: no child remains, zombie or not.
	deadline := time.Now().Add(5 * time.Second)
	for {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("children left: %v", kids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// children lists "pid state" of the processes whose parent is ppid.
func children(ppid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, e.Name()+" "+f[0])
		}
	}
	return out
}
