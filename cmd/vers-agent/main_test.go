package main

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"vers/internal/agent"
)

// The built binary, in development mode, serves the protocol on a socket.
func TestBinaryServesSocket(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vers-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build the agent here: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "-listen", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Start(ctx, agent.ExecRequest{Shell: "echo hi; exit 4", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(p.Stdout())
	io.Copy(io.Discard, p.Stderr())
	res, err := p.Wait()
	if err != nil || string(out) != "hi\n" || res.ExitCode != 4 {
		t.Fatalf("out %q res %+v err %v", out, res, err)
	}
}

// TestAtLeastTwoProcs: one P becomes two; more are left as they are.
func TestAtLeastTwoProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ from, want int }{{1, 2}, {2, 2}, {4, 4}} {
		runtime.GOMAXPROCS(c.from)
		atLeastTwoProcs()
		if got := runtime.GOMAXPROCS(0); got != c.want {
			t.Errorf("from %d Ps: %d, want %d", c.from, got, c.want)
		}
	}
}
