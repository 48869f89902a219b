package vm

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"vers/api"
)

// recEvents records what the domain publishes.
type recEvents struct {
	mu  sync.Mutex
	evs []api.Event
}

func (r *recEvents) Publish(e api.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

// take returns the events published since the last take.
func (r *recEvents) take() []api.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

// summary is an event as one line: its type, the VM's alias, its state.
func summary(e api.Event) string {
	s := e.Type
	if e.Alias != "" {
		s += " " + e.Alias
	}
	if e.VM != nil {
		s += " " + e.VM.State
	}
	for _, k := range e.Children {
		s += " +" + k.Alias
	}
	if e.Tag != "" {
		s += " tag=" + e.Tag
	}
	return s
}

func (e *env) wantEvents(what string, want ...string) []api.Event {
	e.t.Helper()
	evs := e.ev.take()
	var got []string
	for _, ev := range evs {
		got = append(got, summary(ev))
	}
	if !slices.Equal(got, want) {
		e.t.Fatalf("%s published\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return evs
}

// TestEventsInOrder: each verb publishes what it changed, once it is
// recorded, in the order the changes were made.
func TestEventsInOrder(t *testing.T) {
	e := newEnv(t, true)
	ctx := e.ctx()
	root := e.create("root")
	evs := e.wantEvents("create", "vm.created root running")
	if evs[0].VMID != root.ID || evs[0].VM.ID != root.ID {
		t.Fatalf("created: %+v", evs[0])
	}
	res, err := e.m.Branch(ctx, "root", "kid", 2)
	if err != nil {
		t.Fatal(err)
	}
	evs = e.wantEvents("branch", "vm.branched root running +kid-1 +kid-2")
	if evs[0].SnapshotID != res.SnapshotID || evs[0].Children[0].ParentID != root.ID || evs[0].Children[0].State != api.StateRunning {
		t.Fatalf("branched: %+v", evs[0])
	}
	if _, err := e.m.Pause(ctx, "kid-1"); err != nil {
		t.Fatal(err)
	}
	e.m.Pause(ctx, "kid-1") // already paused: no change, no event
	if _, err := e.m.Resume(ctx, "kid-1"); err != nil {
		t.Fatal(err)
	}
	e.m.Resume(ctx, "kid-1")
	e.wantEvents("pause, resume", "vm.state kid-1 paused", "vm.state kid-1 running")

	c := e.commit("root", "v1")
	evs = e.wantEvents("commit", "commit.created root tag=v1")
	if evs[0].Commit != c.ID || evs[0].VMID != root.ID {
		t.Fatalf("commit.created: %+v", evs[0])
	}
	if _, err := e.m.SetTag(ctx, "v2", c.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveTag(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	e.wantEvents("tags", "tag.set tag=v2", "tag.removed tag=v2")

	if _, err := e.m.Sleep(ctx, "kid-2"); err != nil {
		t.Fatal(err)
	}
	e.wantEvents("sleep", "commit.created kid-2", "vm.state kid-2 sleeping")
	if _, err := e.m.Wake(ctx, "kid-2"); err != nil {
		t.Fatal(err)
	}
	// The sleep commit, untagged, goes once the VM is awake.
	e.wantEvents("wake", "commit.removed", "vm.state kid-2 running")

	if _, err := e.m.RunCommit(ctx, "v1", "copy", 1); err != nil {
		t.Fatal(err)
	}
	evs = e.wantEvents("run-commit", "vm.created copy running")
	if evs[0].Commit != c.ID {
		t.Fatalf("run-commit's vm.created names commit %q, want %s", evs[0].Commit, c.ID)
	}
	if _, err := e.m.Kill(ctx, "root", true); err != nil {
		t.Fatal(err)
	}
	e.wantEvents("kill -r", "vm.killed kid-1", "vm.killed kid-2", "vm.killed root")
	if _, err := e.m.RemoveCommits(ctx, []string{c.ID}); err != nil {
		t.Fatal(err)
	}
	if evs := e.wantEvents("commit rm", "commit.removed"); evs[0].Commit != c.ID {
		t.Fatalf("removed: %+v", evs[0])
	}
}

// TestEventsOfTheWatch: a VM whose process exits is announced dead, with
// why, by the watch; and so is one found gone at recovery.
func TestEventsOfTheWatch(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("app")
	e.create("other")
	e.ev.take()
	e.hv.inst(v.ID).exit()
	e.m.checkAll(context.Background())
	evs := e.wantEvents("watch", "vm.state app dead")
	if evs[0].Reason != reasonExited || evs[0].VM.StateReason == "" {
		t.Fatalf("dead: %+v", evs[0])
	}
	e.m.checkAll(context.Background())
	e.wantEvents("watch again") // dead already: nothing new

	// A restarted daemon that finds "other" gone says so.
	e.hv.Kill(e.hv.inst(e.vms()[1].ID).Config())
	e.restart()
	if evs := e.wantEvents("recover", "vm.state other dead"); evs[0].Reason != reasonLost {
		t.Fatalf("lost: %+v", evs[0])
	}
}

// TestEventsDiskFullAndUnresponsive: the watch announces a VM a full disk
// paused and its resume, and one that stops answering and answers again,
// once each.
func TestEventsDiskFullAndUnresponsive(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	e.ev.take()
	in := e.hv.inst(v.ID)
	in.setStatus("io-error")
	e.free = 10
	e.m.checkAll(context.Background())
	e.m.checkAll(context.Background())
	evs := e.wantEvents("disk full", "vm.state web paused")
	if evs[0].Reason != reasonDiskFull {
		t.Fatalf("reason %q", evs[0].Reason)
	}
	e.free = 10_000
	e.m.checkAll(context.Background())
	e.wantEvents("room again", "vm.state web running")

	in.setHung(true)
	e.m.checkAll(context.Background())
	e.wantEvents("hung", "vm.state web unresponsive")
	in.setHung(false)
	e.m.checkAll(context.Background())
	e.wantEvents("answers", "vm.state web running")
}

// TestEventsFailedBranch: a branch that fails publishes no branch, and
// says its children's "creating" rows (which a hello may have shown) are
// gone.
func TestEventsFailedBranch(t *testing.T) {
	e := newEnv(t, true)
	e.create("root")
	e.ev.take()
	e.failAt("branch.record", true)
	if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err == nil {
		t.Fatal("branch did not fail")
	}
	e.wantEvents("failed branch", "vm.killed kid")
}
