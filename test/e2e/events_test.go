package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lines collects what a background command prints, for polling.
type lines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestStatusWatch: `vers status --watch`, its stdout a pipe, draws a tree
// for each change as VMs are run, branched and killed — no escape codes,
// since it is not a terminal — and ends with exit 7 on Ctrl-C.
func TestStatusWatch(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root, kid := uniqueAlias(t, "wr"), uniqueAlias(t, "wk")
	// The daemon is up before the watch starts (run/init may start it).
	p.must("status")

	watch := exec.Command(filepath.Join(binDir, "vers"), "status", "--watch")
	watch.Dir, watch.Env = p.dir, append(os.Environ(), p.env...)
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	watch.Stderr = &stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	out := &lines{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.mu.Lock()
			out.buf.WriteString(sc.Text() + "\n")
			out.mu.Unlock()
		}
	}()
	saw := func(what string, d time.Duration) {
		t.Helper()
		waitFor(t, "the watch to show "+what, d, func() bool { return strings.Contains(out.String(), what) })
	}
	saw("Ctrl-C to stop", 30*time.Second)

	p.must("run", "--vm-alias", root)
	saw(root+" created", 30*time.Second)
	p.must("branch", root, "--alias", kid)
	saw(root+" branched into "+kid, 30*time.Second)
	saw("└─ "+kid, 5*time.Second)
	p.must("kill", root, "-r")
	saw(root+" killed", 30*time.Second)

	watch.Process.Signal(syscall.SIGINT)
	<-read
	err = watch.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 7 {
		t.Fatalf("watch ended with %v, want exit 7; stderr %q", err, stderr.String())
	}
	if s := out.String(); strings.Contains(s, "\x1b") {
		t.Fatalf("escape codes in piped output:\n%q", s)
	}
	t.Logf("watch printed:\n%s", out.String())
}
