package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSessionReset: each session has its own id; a reset ends the session
// and kills its processes, and the next connection is a new session.
func TestSessionReset(t *testing.T) {
	f, c := newFixture(t)
	first := c.Session()
	if first == "" {
		t.Fatal("hello reported no session")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	marker := filepath.Join(f.home, "pid")
	p, err := c.Start(ctx, ExecRequest{Shell: "echo $$ > " + marker + "; exec sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var pid string
	for ctx.Err() == nil {
		b, _ := os.ReadFile(marker)
		if pid = strings.TrimSpace(string(b)); pid != "" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if _, err := c.Info(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("a reset session still answers: %v", err)
	}
	// The session's process dies with it.
	for {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("process %s of a reset session still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c2 := dial(t, f.sock)
	if c2.Session() == "" || c2.Session() == first {
		t.Fatalf("next session %q, first %q", c2.Session(), first)
	}
}
