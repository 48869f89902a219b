package vm

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"vers/internal/qemu"
)

// TestBranchStartsChildrenFewAtATime: no more than ChildStarts children of
// one branch start at once, and all of them start.
func TestBranchStartsChildrenFewAtATime(t *testing.T) {
	e := newEnv(t, true)
	e.create("root")
	e.m.cfg.ChildStarts = 3
	var inflight, most atomic.Int32
	e.hv.onStart = func(cfg qemu.Config) {
		if kindOf(cfg) != "child" {
			return
		}
		n := inflight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond) // a start's work; all would overlap without the bound
		inflight.Add(-1)
	}
	res, err := e.m.Branch(e.ctx(), "root", "k", 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Children) != 8 {
		t.Fatalf("%d children, want 8", len(res.Children))
	}
	if got := most.Load(); got != 3 {
		t.Fatalf("at most %d children started at once, want 3", got)
	}
}

// TestBranchStartsChildrenEarly: where RAM is cloned, the QEMU of each
// child that starts first is started before the parent's pause, its RAM
// cloned over its file after; where RAM is copied, no child starts before
// its RAM exists.
func TestBranchStartsChildrenEarly(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(method(clone), func(t *testing.T) {
			e := newEnv(t, clone)
			e.create("root")
			e.m.cfg.ChildStarts = 2
			e.hv.mu.Lock()
			e.hv.calls = nil
			e.hv.mu.Unlock()
			if _, err := e.m.Branch(e.ctx(), "root", "k", 3); err != nil {
				t.Fatal(err)
			}
			e.hv.mu.Lock()
			calls := slices.Clone(e.hv.calls)
			e.hv.mu.Unlock()
			pause := slices.Index(calls, "Pause:parent")
			early := 0
			for i, c := range calls {
				if c == "Start:child" && i < pause {
					early++
				}
			}
			want := 0
			if clone {
				want = 2 // as many as start at once
			}
			if early != want || pause < 0 {
				t.Fatalf("%d children started before the pause, want %d: %v", early, want, calls)
			}
			for _, k := range e.vms()[1:] {
				if out := execOut(t, e, k.ID, "true"); out != "" {
					t.Errorf("child %s: %q", k.Alias, out)
				}
			}
		})
	}
}
