package vm

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
)

// pause pauses ref and checks that it is recorded and shown paused.
func (e *env) pause(ref string) api.VM {
	e.t.Helper()
	v, err := e.m.Pause(e.ctx(), ref)
	if err != nil {
		e.t.Fatalf("pause %s: %v", ref, err)
	}
	if v.State != api.StatePaused || v.StateReason != api.ReasonPaused {
		e.t.Fatalf("paused VM shows %q (%q)", v.State, v.StateReason)
	}
	if r, _ := e.st.GetVM(e.ctx(), v.ID); r.State != api.StatePaused {
		e.t.Fatalf("paused VM recorded %q", r.State)
	}
	return v
}

// TestPauseResume: a paused VM's guest is stopped; commands in it fail at
// once saying how to resume it; pausing it again or resuming a running VM
// is no error; a resumed VM takes commands again.
func TestPauseResume(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	in := e.hv.inst(v.ID)
	e.pause("web")
	if st := in.getStatus(); st != "paused" {
		t.Fatalf("guest is %s after a pause", st)
	}
	_, err := e.m.Exec(e.ctx(), "web", agent.ExecRequest{Shell: "true"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "`vers resume web`") {
		t.Fatalf("exec in a paused VM: %v", err)
	}
	if _, _, err := e.m.ReadFile(e.ctx(), "web", "/etc/hostname"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("read a file of a paused VM: %v", err)
	}
	if err := e.m.WriteFile(e.ctx(), "web", "/tmp/x", 0o644, bytes.NewReader(nil)); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("write a file in a paused VM: %v", err)
	}
	e.pause("web") // again: nothing to do
	if l, _ := e.m.List(e.ctx()); len(l) != 1 || l[0].State != api.StatePaused {
		t.Fatalf("list: %+v", l)
	}

	got, err := e.m.Resume(e.ctx(), "web")
	if err != nil || got.State != api.StateRunning || got.StateReason != "" {
		t.Fatalf("resume: %+v %v", got, err)
	}
	if st := in.getStatus(); st != "running" {
		t.Fatalf("guest is %s after a resume", st)
	}
	if r, _ := e.st.GetVM(e.ctx(), v.ID); r.State != api.StateRunning {
		t.Fatalf("resumed VM recorded %q", r.State)
	}
	execOut(t, e, "web", "true")
	runs := in.runs()
	if got, err := e.m.Resume(e.ctx(), "web"); err != nil || got.State != api.StateRunning {
		t.Fatalf("resume a running VM: %+v %v", got, err)
	}
	if in.runs() != runs {
		t.Error("resuming a running VM called cont")
	}
}

// TestPauseFailureKeepsRunning: a pause QEMU refuses leaves the VM running,
// recorded so; a dead VM is neither paused nor resumed.
func TestPauseFailureKeepsRunning(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	e.hv.fail("Pause", errBoom)
	if _, err := e.m.Pause(e.ctx(), "web"); err == nil {
		t.Fatal("pause succeeded although QEMU failed it")
	}
	e.hv.fail("Pause", nil)
	if r, _ := e.st.GetVM(e.ctx(), v.ID); r.State != api.StateRunning {
		t.Fatalf("recorded %q after a failed pause", r.State)
	}
	execOut(t, e, "web", "true")

	e.hv.inst(v.ID).exit()
	for name, op := range map[string]func(context.Context, string) (api.VM, error){"pause": e.m.Pause, "resume": e.m.Resume} {
		if _, err := op(e.ctx(), "web"); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "vers kill") {
			t.Errorf("%s of a dead VM: %v", name, err)
		}
	}
}

// TestPausedStaysPaused: neither the watch (a full disk with room again)
// nor a restarted daemon runs a VM a user paused; a restarted daemon pauses
// one again that a crash left running.
func TestPausedStaysPaused(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	e.pause("web")
	in := e.hv.inst(v.ID)
	runs := in.runs()

	e.m.checkAll(context.Background())
	in.setStatus("io-error") // and the disk filled up meanwhile
	e.m.checkAll(context.Background())
	if in.getStatus() != "io-error" || in.runs() != runs {
		t.Fatal("the watch resumed a VM a user paused")
	}
	if got, _ := e.m.Get(e.ctx(), "web"); got.State != api.StatePaused || got.StateReason != api.ReasonPaused {
		t.Fatalf("shows %q (%q)", got.State, got.StateReason)
	}
	in.setStatus("paused")

	e.restart()
	if in.getStatus() != "paused" || in.runs() != runs {
		t.Fatal("a restarted daemon ran a paused VM")
	}
	if got, _ := e.m.Get(e.ctx(), "web"); got.State != api.StatePaused {
		t.Fatalf("after a restart: %q", got.State)
	}
	if _, err := e.m.Exec(e.ctx(), "web", agent.ExecRequest{Shell: "true"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("exec after a restart: %v", err)
	}

	// A daemon killed between the record and the stop.
	in.setStatus("running")
	e.restart()
	if in.getStatus() != "paused" {
		t.Fatalf("a VM recorded paused is %s after a restart", in.getStatus())
	}
	if _, err := e.m.Resume(e.ctx(), "web"); err != nil {
		t.Fatal(err)
	}
	execOut(t, e, "web", "true")
}

// TestKillPaused: a paused VM, and a paused tree, are killed like running ones.
func TestKillPaused(t *testing.T) {
	e := newEnv(t, false)
	e.create("web")
	e.pause("web")
	if _, err := e.m.Kill(e.ctx(), "web", false); err != nil {
		t.Fatal(err)
	}
	e.create("root")
	if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err != nil {
		t.Fatal(err)
	}
	e.pause("root")
	e.pause("kid")
	if _, err := e.m.Kill(e.ctx(), "root", true); err != nil {
		t.Fatal(err)
	}
	if len(e.vms()) != 0 || len(e.hv.running()) != 0 || len(e.snapshots()) != 0 {
		t.Fatalf("left: rows %+v, processes %v, snapshots %+v", e.vms(), e.hv.running(), e.snapshots())
	}
}

// TestBranchPaused: a paused parent stays paused through a branch, for both
// RAM methods, its guest never run; its children run. A second branch
// while still paused works too, and the parent then resumes.
func TestBranchPaused(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(method(clone), func(t *testing.T) {
			e := newEnv(t, clone)
			p := e.create("root")
			e.pause("root")
			in := e.hv.inst(p.ID)
			runs := in.runs()
			res, err := e.m.Branch(e.ctx(), "root", "kid", 2)
			if err != nil {
				t.Fatal(err)
			}
			if in.runs() != runs || in.getStatus() == "running" {
				t.Fatalf("the paused parent ran during its branch (now %s)", in.getStatus())
			}
			if res.Parent.State != api.StatePaused || res.Pause != 0 {
				t.Errorf("parent %q, pause %s", res.Parent.State, res.Pause)
			}
			if r, _ := e.st.GetVM(e.ctx(), p.ID); r.State != api.StatePaused {
				t.Fatalf("parent recorded %q after the branch", r.State)
			}
			for _, k := range res.Children {
				if k.State != api.StateRunning || e.hv.inst(k.ID).getStatus() != "running" {
					t.Errorf("child %s: %q, guest %s", k.Alias, k.State, e.hv.inst(k.ID).getStatus())
				}
				execOut(t, e, k.ID, "true")
			}
			// Still paused: branched again, and again it stays paused.
			if _, err := e.m.Branch(e.ctx(), "root", "again", 1); err != nil {
				t.Fatalf("second branch of a paused parent: %v", err)
			}
			if st := in.getStatus(); st == "running" {
				t.Fatal("the paused parent runs after a second branch")
			}
			if got, _ := e.m.Get(e.ctx(), "root"); got.State != api.StatePaused {
				t.Fatalf("parent shows %q", got.State)
			}
			if _, err := e.m.Resume(e.ctx(), "root"); err != nil {
				t.Fatal(err)
			}
			execOut(t, e, "root", "true")
			if _, err := e.m.Branch(e.ctx(), "root", "running", 1); err != nil {
				t.Fatalf("branch after the resume: %v", err)
			}
			if st := in.getStatus(); st != "running" {
				t.Fatalf("a running parent is %s after its branch", st)
			}
		})
	}
}

// TestBranchPausedUndoesEveryStep fails each step of the branch of a paused
// parent in turn, for both RAM methods: the parent stays paused (its guest
// never runs), nothing else is left, and the next branch works.
func TestBranchPausedUndoesEveryStep(t *testing.T) {
	for _, clone := range []bool{true, false} {
		for _, s := range branchSteps(clone) {
			t.Run(method(clone)+"/"+s.name, func(t *testing.T) {
				e := newEnv(t, clone)
				p := e.create("root")
				e.pause("root")
				in := e.hv.inst(p.ID)
				runs := in.runs()
				before := e.files()
				s.set(e, true)
				if _, err := e.m.Branch(e.ctx(), "root", "kid", 2); err == nil {
					t.Fatal("branch succeeded")
				}
				s.set(e, false)
				checkAfterFailedBranch(t, e, p, before, s.switched, api.StatePaused)
				if in.runs() != runs {
					t.Error("the paused parent ran")
				}
				if _, err := e.m.Branch(e.ctx(), "root", "kid", 2); err != nil {
					t.Fatalf("branch after a failed one: %v", err)
				}
				if in.getStatus() == "running" {
					t.Error("the paused parent runs after the next branch")
				}
			})
		}
	}
}

// TestRecoverBranchOfPaused: a daemon killed in the branch of a paused
// parent, before or after its disk moved, leaves it paused once recovered.
func TestRecoverBranchOfPaused(t *testing.T) {
	for _, moved := range []bool{false, true} {
		e := newEnv(t, true)
		root := e.create("root")
		e.pause("root")
		in := e.hv.inst(root.ID)
		runs := in.runs()
		e.interrupted(root, moved)
		in.setStatus("postmigrate") // its state was saved
		e.restart()
		if vms := e.vms(); len(vms) != 1 || vms[0].State != api.StatePaused {
			t.Fatalf("moved %v: rows after recovery: %+v", moved, vms)
		}
		if in.getStatus() == "running" || in.runs() != runs {
			t.Fatalf("moved %v: recovery ran the paused parent", moved)
		}
		if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err != nil {
			t.Fatalf("moved %v: branch after recovery: %v", moved, err)
		}
		if _, err := e.m.Resume(e.ctx(), "root"); err != nil {
			t.Fatal(err)
		}
		execOut(t, e, "root", "true")
	}
}
