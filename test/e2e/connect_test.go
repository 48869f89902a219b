package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// terminal is the output side of a PTY a test drives vers through.
type terminal struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

func (t *terminal) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// TestConnectInteractive drives `vers connect` through a real terminal:
// raw mode, the window size and its changes reach the guest, Ctrl-C
// interrupts the guest's foreground job (not vers), `exit N` returns N, and
// the terminal is restored afterwards.
func TestConnectInteractive(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "tty")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	pty.Setsize(master, &pty.Winsize{Rows: 31, Cols: 97})
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(binDir, "vers"), "connect")
	cmd.Dir = p.dir
	cmd.Env = os.Environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := &terminal{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	expect := func(what string) {
		t.Helper()
		waitFor(t, "terminal to show "+what, 20*time.Second, func() bool { return strings.Contains(out.String(), what) })
	}
	send := func(s string) { master.Write([]byte(s)) }

	send("echo READY$((40+2))\r")
	expect("READY42")
	send("stty size\r")
	expect("31 97")
	pty.Setsize(master, &pty.Winsize{Rows: 44, Cols: 111})
	time.Sleep(300 * time.Millisecond) // let SIGWINCH travel: nothing to poll on
	send("stty size\r")
	expect("44 111")
	send("sleep 100\r")
	time.Sleep(500 * time.Millisecond)
	send("\x03")
	send("echo INT$?\r")
	expect("INT130")
	send("exit 3\r")

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 {
			t.Fatalf("vers connect ended with %v, want exit 3\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("vers connect did not return after exit\n%s", out.String())
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("terminal not restored: lflag %#x→%#x iflag %#x→%#x oflag %#x→%#x",
			before.Lflag, after.Lflag, before.Iflag, after.Iflag, before.Oflag, after.Oflag)
	}
}

// TestCopyFiles: vers cp moves files both ways, keeps their bytes and mode,
// and says so when a file is missing.
func TestCopyFiles(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "cp")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	data := bytes.Repeat([]byte("vers\x00\xff"), 200_000) // 1.2 MB, binary
	src := filepath.Join(p.dir, "blob.bin")
	os.WriteFile(src, data, 0o750)
	p.must("cp", src, alias+":/app/in/blob.bin")
	if out := p.must("execute", alias, "stat -c '%s %a' /app/in/blob.bin"); strings.TrimSpace(out) != "1200000 750" {
		t.Fatalf("in the VM: %q", out)
	}
	back := filepath.Join(p.dir, "back.bin")
	p.must("cp", ":/app/in/blob.bin", back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
		t.Fatalf("round trip changed the file (%d bytes back)", len(got))
	}
	p.expect(3, "no such file", "cp", alias+":/nope", back)
	p.expect(2, "", "cp", src, back)
}
