package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vers/api"
	"vers/client"
	"vers/internal/events"
)

// fixedVMs is a domain whose VMs never change.
type fixedVMs []api.VM

func (f fixedVMs) List(context.Context) ([]api.VM, error) { return f, nil }

func eventServer(t *testing.T, b *events.Broker, vms fixedVMs) *client.Client {
	t.Helper()
	s := &Server{eventSrc: VMEvents{Broker: b, VMs: vms}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sock := serveOnSocket(t, s)
	return client.New(sock)
}

// waitFor waits until cond holds, or fails saying what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEventsStream: hello with the VMs first, then each event in order;
// a client that goes away ends its subscription and leaves no goroutine.
func TestEventsStream(t *testing.T) {
	b := events.New(16)
	c := eventServer(t, b, fixedVMs{{ID: "a1", Alias: "a", State: api.StateRunning}})
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan api.Event, 10)
	done := make(chan error, 1)
	go func() { done <- c.Events(ctx, func(e api.Event) error { got <- e; return nil }) }()
	hello := <-got
	if hello.Type != api.EventHello || len(hello.VMs) != 1 || hello.VMs[0].Alias != "a" {
		t.Fatalf("first event %+v, want a hello with VM a", hello)
	}
	waitFor(t, "the subscription", func() bool { return b.Subscribers() == 1 })
	b.Publish(api.Event{Type: api.EventVMCreated, VMID: "b1", VM: &api.VM{ID: "b1"}})
	b.Publish(api.Event{Type: api.EventVMKilled, VMID: "a1"})
	for _, want := range []string{api.EventVMCreated, api.EventVMKilled} {
		if e := <-got; e.Type != want || e.Time.IsZero() {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Events after cancel: %v", err)
	}
	waitFor(t, "the subscription to end", func() bool { return b.Subscribers() == 0 })
	waitGoroutines(t, before)
}

// TestEventsLagged: a client that stops reading is dropped by the broker
// (Publish never waits); once it reads again it gets "lagged" and the end.
func TestEventsLagged(t *testing.T) {
	b := events.New(4)
	c := eventServer(t, b, nil)
	release := make(chan struct{})
	var last api.Event
	done := make(chan error, 1)
	go func() {
		done <- c.Events(context.Background(), func(e api.Event) error {
			if e.Type == api.EventHello {
				<-release // stop reading
			}
			last = e
			return nil
		})
	}()
	waitFor(t, "the subscription", func() bool { return b.Subscribers() == 1 })
	big := strings.Repeat("x", 4096)
	for i := 0; b.Subscribers() > 0; i++ {
		if i > 100_000 {
			t.Fatal("a reader that does not read was never dropped")
		}
		b.Publish(api.Event{Type: api.EventVMState, Reason: big})
	}
	close(release)
	if err := <-done; !errors.Is(err, client.ErrLagged) {
		t.Fatalf("Events: %v, want ErrLagged", err)
	}
	if last.Type != api.EventLagged || last.Reason != events.Lagged {
		t.Fatalf("last event %+v", last)
	}
}

func TestEventsUnavailable(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

// waitGoroutines waits until no more than n goroutines run, or fails.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// A watcher does not count as a request in flight: it would keep a daemon
// of another build from being replaced for as long as it watches.
func TestEventsNotBusy(t *testing.T) {
	b := events.New(4)
	s := &Server{eventSrc: VMEvents{Broker: b, VMs: fixedVMs{}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if _, _, err := conn.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.busy.Load(); n != 0 {
		t.Fatalf("busy %d with a watcher, want 0", n)
	}
}
