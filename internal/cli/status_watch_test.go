package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/client"
)

// eventState is the fake daemon's event side: each Events call plays the
// next stream, then ends with its end error, or waits for its context
// when it has none.
type eventState struct {
	streams []fakeStream
	// subscribed gets a value at each Events call.
	subscribed chan struct{}
}

type fakeStream struct {
	events []api.Event
	end    error
}

func (d *fakeDaemon) Events(ctx context.Context, fn func(api.Event) error) error {
	d.mu.Lock()
	var s fakeStream
	if len(d.streams) > 0 {
		s, d.streams = d.streams[0], d.streams[1:]
	}
	sub := d.subscribed
	d.mu.Unlock()
	if sub != nil {
		sub <- struct{}{}
	}
	for _, e := range s.events {
		if err := fn(e); err != nil {
			return err
		}
	}
	if s.end != nil {
		return s.end
	}
	<-ctx.Done()
	return ctx.Err()
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)

func vmEv(typ string, v api.VM, kids ...api.VM) api.Event {
	return api.Event{Type: typ, Time: t0, VMID: v.ID, Alias: v.Alias, VM: &v, Children: kids}
}

// TestWatchNotATerminal: one tree per change, each under a line saying
// what changed, no escape codes; a lagged stream is opened again; the
// daemon going away ends the watch with an error that says so.
func TestWatchNotATerminal(t *testing.T) {
	e := newEnv(t)
	root := api.VM{ID: rootID, Alias: "db-root", State: api.StateRunning, CreatedAt: t0}
	kid := api.VM{ID: "44444444-kid", Alias: "kid", State: api.StateRunning, ParentID: rootID, CreatedAt: t0.Add(time.Second)}
	paused := kid
	paused.State, paused.StateReason = api.StatePaused, api.ReasonPaused
	e.d.streams = []fakeStream{
		{events: []api.Event{
			{Type: api.EventHello, Time: t0, VMs: []api.VM{root}},
			vmEv(api.EventVMBranched, root, kid),
			{Type: api.EventCommitCreated, Time: t0, Commit: "c1"}, // not in the tree: no redraw
			{Type: api.EventLagged, Time: t0},
		}, end: fmt.Errorf("%w: behind", client.ErrLagged)},
		{events: []api.Event{
			{Type: api.EventHello, Time: t0, VMs: []api.VM{root, kid}},
			vmEv(api.EventVMState, paused),
			{Type: api.EventVMKilled, Time: t0, VMID: kid.ID, Alias: "kid"},
		}, end: fmt.Errorf("%w: EOF", client.ErrEventsEnded)},
	}
	code := e.run("status", "--watch")
	if code != ExitError || !strings.Contains(e.errOut.String(), "versd went away") {
		t.Fatalf("exit %d, stderr %q", code, e.errOut)
	}
	out := e.out.String()
	if strings.Contains(out, "\x1b") {
		t.Fatalf("escape codes in output that is not a terminal: %q", out)
	}
	trees := strings.Split(out, "\n\n")
	heads := []string{
		"-- 03:04:05 watching 1 VM(s); Ctrl-C to stop",
		"-- 03:04:05 db-root branched into kid (paused 0s)",
		"-- 03:04:05 watching 2 VM(s); Ctrl-C to stop",
		"-- 03:04:05 kid is paused",
		"-- 03:04:05 kid killed",
	}
	if len(trees) != len(heads) {
		t.Fatalf("%d trees, want %d:\n%s", len(trees), len(heads), out)
	}
	for i, h := range heads {
		if !strings.HasPrefix(trees[i], h) {
			t.Errorf("tree %d starts %q, want %q", i, strings.SplitN(trees[i], "\n", 2)[0], h)
		}
	}
	if !strings.Contains(trees[1], "└─ kid") || !strings.Contains(trees[3], "paused") || strings.Contains(trees[4], "kid  ") {
		t.Fatalf("trees:\n%s", out)
	}
}

// TestWatchCtrlC: a cancelled watch ends with exit 7 (cancelled).
func TestWatchCtrlC(t *testing.T) {
	e := newEnv(t)
	e.d.subscribed = make(chan struct{}, 1)
	e.d.streams = []fakeStream{{events: []api.Event{{Type: api.EventHello, Time: t0}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- Main(ctx, e.f, []string{"status", "-w"}) }()
	<-e.d.subscribed
	cancel()
	if code := <-done; code != ExitCancelled {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitCancelled, e.errOut)
	}
	if !strings.Contains(e.out.String(), "No VMs.") {
		t.Fatalf("stdout %q", e.out)
	}
}

func TestWatchJSONAndUsage(t *testing.T) {
	e := newEnv(t)
	e.d.streams = []fakeStream{{events: []api.Event{{Type: api.EventHello, Time: t0}, {Type: api.EventTagSet, Tag: "v1", Time: t0}},
		end: client.ErrEventsEnded}}
	e.expect(ExitError, []string{"status", "--watch", "--format", "json"}, `{"type":"tag.set",`, "versd went away")
	if n := strings.Count(e.out.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want 2: %q", n, e.out)
	}
	e.expect(ExitUsage, []string{"status", "--watch", "db-root"}, "", "--watch shows every VM")
	e.expect(ExitUsage, []string{"status", "--watch", "-q"}, "", "do not go together")
}

func TestApplyEvent(t *testing.T) {
	a := api.VM{ID: "a", State: api.StateRunning}
	vms, _ := applyEvent(nil, api.Event{Type: api.EventHello, VMs: []api.VM{a}})
	// A creation the hello already showed changes nothing twice.
	vms, _ = applyEvent(vms, vmEv(api.EventVMCreated, a))
	b := api.VM{ID: "b", ParentID: "a"}
	vms, _ = applyEvent(vms, vmEv(api.EventVMBranched, a, b))
	if len(vms) != 2 {
		t.Fatalf("%+v", vms)
	}
	vms, _ = applyEvent(vms, api.Event{Type: api.EventVMKilled, VMID: "a"})
	if _, changed := applyEvent(vms, api.Event{Type: api.EventTagRemoved}); changed || len(vms) != 1 || vms[0].ID != "b" {
		t.Fatalf("%+v", vms)
	}
}
