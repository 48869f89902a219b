package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

func TestPauseResume(t *testing.T) {
	tests := []struct {
		args  []string
		calls []string // Pause/Resume calls on the daemon
		out   string
	}{
		{[]string{"pause"}, []string{"pause " + headID}, "Paused head-vm; `vers resume head-vm` runs it again\n"},
		{[]string{"pause", "db-root"}, []string{"pause " + rootID}, "Paused db-root; `vers resume db-root` runs it again\n"},
		{[]string{"pause", "33333"}, []string{"pause " + otherID}, "Paused " + otherID + "; `vers resume " + otherID + "` runs it again\n"},
		{[]string{"resume"}, []string{"resume " + headID}, "head-vm is already running\n"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		if code := e.run(tt.args...); code != 0 {
			t.Errorf("%q: exit %d: %s", tt.args, code, e.errOut)
			continue
		}
		if !slices.Equal(e.d.paused, tt.calls) || e.out.String() != tt.out {
			t.Errorf("%q: calls %q, out %q; want %q, %q", tt.args, e.d.paused, e.out, tt.calls, tt.out)
		}
	}

	e := newEnv(t)
	e.run("pause")
	if code := e.run("pause"); code != 0 || e.out.String() != "head-vm is already paused; `vers resume head-vm` runs it again\n" {
		t.Fatalf("pause twice: exit %d, out %q", code, e.out)
	}
	if code := e.run("resume", "--format", "json"); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, e.errOut)
	}
	var v api.VM
	if err := json.Unmarshal(e.out.Bytes(), &v); err != nil || v.ID != headID || v.State != api.StateRunning {
		t.Fatalf("json %q: %v", e.out, err)
	}
	e.run("pause", "db-root")
	if code := e.run("resume", "db-root"); code != 0 || e.out.String() != "Resumed db-root\n" {
		t.Fatalf("resume: exit %d, out %q", code, e.out)
	}
}

func TestPauseRefusals(t *testing.T) {
	tests := []struct {
		args  []string
		setup func(e *env)
		code  int
		want  string
	}{
		{[]string{"pause", "a", "b"}, nil, ExitUsage, "accepts at most 1 arg"},
		{[]string{"pause", ""}, nil, ExitUsage, "the VM is empty"},
		{[]string{"resume", "--format", "yaml"}, nil, ExitUsage, "--format \"yaml\""},
		{[]string{"pause", "nope"}, nil, ExitNotFound, "no VM \"nope\""},
		{[]string{"pause"}, func(e *env) { e.proj.SetHead("99999999-gone") }, ExitNotFound, "HEAD names VM 99999999-gone"},
		{[]string{"resume"}, func(e *env) { e.proj.SetHead("") }, ExitInvalid, "HEAD is not set"},
		{[]string{"pause"}, func(e *env) { e.d.pauseErr = fmt.Errorf("vm head-vm is dead: %w", errdefs.ErrConflict) }, ExitConflict, "is dead"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		if tt.setup != nil {
			tt.setup(e)
		}
		if code := e.run(tt.args...); code != tt.code || !strings.Contains(e.errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tt.args, code, e.errOut, tt.code, tt.want)
		}
	}
}

// TestPausedRefusesCommands: execute and connect in a paused VM say how to
// resume it, as vers's own failure (255, kind conflict); --resume resumes
// it first; cp says so with exit 4.
func TestPausedRefusesCommands(t *testing.T) {
	want := "vers: conflict: vm head-vm is paused; `vers resume head-vm` runs it again, or pass --resume\n"
	for _, args := range [][]string{{"execute", "true"}, {"connect"}} {
		e := newEnv(t)
		e.run("pause")
		if code := e.run(args...); code != ExitSession || e.errOut.String() != want {
			t.Errorf("%q on a paused VM: exit %d, stderr %q", args, code, e.errOut)
		}
		if len(e.d.execs) != 0 {
			t.Errorf("%q ran %+v", args, e.d.execs)
		}
		resumed := append([]string{args[0], "--resume"}, args[1:]...)
		if code := e.run(resumed...); code != 0 {
			t.Errorf("%q: exit %d: %s", resumed, code, e.errOut)
		}
		if v, _ := e.d.find(headID); v.State != api.StateRunning || len(e.d.execs) != 1 {
			t.Errorf("%q: VM %q, %d execs", resumed, v.State, len(e.d.execs))
		}
		// On a running VM --resume resumes nothing.
		e.run(resumed...)
		if got := e.d.paused; len(got) != 2 || got[1] != "resume "+headID {
			t.Errorf("%q: pause/resume calls %q", resumed, got)
		}
	}
	// A VM named after execute's flags.
	e := newEnv(t)
	e.run("pause", "db-root")
	if code := e.run("execute", "db-root", "--resume", "true"); code != 0 || len(e.d.execs) != 1 || e.d.execs[0].Ref != "db-root" {
		t.Fatalf("execute db-root --resume: exit %d, %+v: %s", code, e.d.execs, e.errOut)
	}

	for _, args := range [][]string{{"cp", ":/etc/hostname", "-"}, {"cp", "-", "db-root:/tmp/x"}} {
		e := newEnv(t)
		e.run("pause")
		e.run("pause", "db-root")
		if code := e.run(args...); code != ExitConflict || !strings.Contains(e.errOut.String(), "is paused; `vers resume") {
			t.Errorf("%q on a paused VM: exit %d, stderr %q", args, code, e.errOut)
		}
	}
}

// TestBranchPausedParent: the branch of a paused parent says it stays paused.
func TestBranchPausedParent(t *testing.T) {
	e := newEnv(t)
	e.run("pause")
	if code := e.run("branch"); code != 0 || !strings.Contains(e.out.String(), "Parent stays paused; first child ready in 300 ms") {
		t.Fatalf("exit %d, out %q", code, e.out)
	}
}
