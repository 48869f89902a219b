package agent

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// chunks is a reader that returns its chunks one per Read, then blocks or
// ends.
type chunks struct {
	parts [][]byte
	block chan struct{} // nil: io.EOF after the last chunk
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		if c.block != nil {
			<-c.block
		}
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if n < len(c.parts[0]) {
		c.parts[0] = c.parts[0][n:]
	} else {
		c.parts = c.parts[1:]
	}
	return n, nil
}

// sessions reads every session of a stream: each ends at a mark or EOF.
func sessions(ms *markStream, n int) []string {
	var out []string
	for range n {
		ms.next()
		b, _ := io.ReadAll(ms)
		out = append(out, string(b))
	}
	return out
}

// TestMarkStream cuts a port's bytes into sessions at every split of the
// input: stale bytes before the first mark are skipped, each mark ends a
// session and starts the next.
func TestMarkStream(t *testing.T) {
	mark := string(sessionMark)
	input := "stale half frame" + mark + "first session" + mark + "second" + mark + mark + "fourth"
	want := []string{"first session", "second", "", "fourth"}
	for cut := 0; cut <= len(input); cut++ {
		for cut2 := cut; cut2 <= len(input); cut2 += 7 {
			parts := [][]byte{[]byte(input[:cut]), []byte(input[cut:cut2]), []byte(input[cut2:])}
			got := sessions(newMarkStream(&chunks{parts: parts}), 4)
			for i := range want {
				// A mark split over two reads may leave up to 15 of its bytes
				// at the end of the session it ends: that host has gone.
				g := got[i]
				if i < 3 && len(g) > len(want[i]) && strings.HasPrefix(g, want[i]) && strings.HasPrefix(mark, g[len(want[i]):]) {
					g = want[i]
				}
				if g != want[i] {
					t.Fatalf("cut at %d,%d: session %d got %q, want %q", cut, cut2, i, got[i], want[i])
				}
			}
		}
	}
}

// TestMarkStreamHoldsNothingBack: bytes that could begin a mark reach the
// session at once — a frame that ends that way must not wait for more.
func TestMarkStreamHoldsNothingBack(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	frame := append([]byte("frame"), sessionMark[:5]...)
	ms := newMarkStream(&chunks{parts: [][]byte{sessionMark, frame}, block: block})
	ms.next()
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 64)
		for len(all) < len(frame) {
			n, err := ms.Read(buf)
			if err != nil {
				break
			}
			all = append(all, buf[:n]...)
		}
		got <- all
	}()
	select {
	case b := <-got:
		if !bytes.Equal(b, frame) {
			t.Fatalf("got %q, want %q", b, frame)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("bytes that look like the start of a mark were held back")
	}
}

// TestNewHostEndsAnInheritedSession: a guest resumed inside its parent's
// session (a branch child: the port looks connected all along) serves the
// new host a session of its own as soon as it speaks, and the processes of
// the parent's session end.
func TestNewHostEndsAnInheritedSession(t *testing.T) {
	srv := NewServer(ServerConfig{HomeDir: t.TempDir(), Logf: t.Logf})
	srv.Ready()
	port := newFakePort()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.ServePort(ctx, port)
	parent, err := NewClient(port.connect())
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if _, err := parent.Info(rctx); err != nil {
		t.Fatal(err)
	}
	p, err := parent.Start(rctx, ExecRequest{Shell: "echo $$; exec sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	var acc bytes.Buffer
	waitFor(t, p.Stdout(), &acc, "\n")
	pid := strings.TrimSpace(acc.String())

	// The child's host takes the port over without the guest seeing a
	// disconnect.
	child, err := NewClient(port.swap())
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	if _, err := child.Info(rctx); err != nil {
		t.Fatalf("the new host gets no answer: %v", err)
	}
	if o := run(t, child, ExecRequest{Shell: "echo ok"}, ""); o.stdout != "ok\n" {
		t.Fatalf("exec for the new host: %+v", o)
	}
	n := 0
	for ; n < 200; n++ {
		if b, err := readProc(pid); err != nil || strings.Contains(b, ") Z ") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n == 200 {
		t.Fatalf("process %s of the inherited session still runs", pid)
	}
}
