package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/poll"
	"vers/internal/store"
)

var errBoom = errors.New("boom")

func TestCreate(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	if v.State != api.StateRunning || v.Alias != "web" || v.PID == 0 {
		t.Fatalf("created %+v", v)
	}
	if got := e.hv.running(); len(got) != 1 || got[0] != v.ID {
		t.Fatalf("running %v, want %s", got, v.ID)
	}
	cfg := e.hv.inst(v.ID).Config()
	if cfg.MemPath != filepath.Join(e.ramd, v.ID+".ram") {
		t.Errorf("RAM of a VM on a cloning RAM filesystem: %q", cfg.MemPath)
	}
	got, err := e.m.Get(e.ctx(), "web")
	if err != nil || got.ID != v.ID {
		t.Fatalf("get by alias: %+v %v", got, err)
	}
	if _, err := e.m.Get(e.ctx(), v.ID[:6]); err != nil {
		t.Fatalf("get by id prefix: %v", err)
	}
}

// TestCreateUndoesEveryStep fails each step of a create in turn: nothing
// may be left, neither a row, a file nor a process.
func TestCreateUndoesEveryStep(t *testing.T) {
	steps := []struct {
		name  string
		setup func(e *env)
	}{
		{"disk", func(e *env) { e.hv.fail("CreateOverlay", errBoom) }},
		{"start", func(e *env) { e.hv.fail("Start", errBoom) }},
		{"failpoint create.start", func(e *env) { e.failAt("create.start", true) }},
		{"guest exits while booting", func(e *env) { e.hv.exitOnStart = true }},
		{"after boot", func(e *env) { e.failAt("create.after-boot", true) }},
		{"bad alias", func(e *env) {}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, true)
			s.setup(e)
			alias := "ok"
			if s.name == "bad alias" {
				alias = "abcdef012"
			}
			_, err := e.m.Create(e.ctx(), Spec{Alias: alias, MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default"})
			if err == nil {
				t.Fatal("create succeeded")
			}
			if vms := e.vms(); len(vms) != 0 {
				t.Errorf("rows left: %+v", vms)
			}
			if f := e.files(); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
			if r := e.hv.running(); len(r) != 0 {
				t.Errorf("processes left: %v", r)
			}
			// The name is free again.
			e.hv.fail("CreateOverlay", nil)
			e.hv.fail("Start", nil)
			e.failAt("create.start", false)
			e.failAt("create.after-boot", false)
			e.create("ok")
		})
	}
}

func TestCreateExitedGuestSaysSo(t *testing.T) {
	e := newEnv(t, true)
	e.hv.exitOnStart = true
	start := time.Now()
	_, err := e.m.Create(e.ctx(), Spec{MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default"})
	if err == nil || !strings.Contains(err.Error(), "QEMU exited") {
		t.Fatalf("got %v, want the guest's exit", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s: a VM that exits is reported at once, not after the boot timeout", d)
	}
}

// TestAdmission counts what runs already: two VMs that each fit the host
// but not together are not both let in.
func TestAdmission(t *testing.T) {
	e := newEnv(t, true)
	spec := Spec{MemMiB: 16000, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default"}
	if _, err := e.m.Create(e.ctx(), spec); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Create(e.ctx(), spec)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("second 16000 MiB VM on a 24 GiB host: %v", err)
	}
	if n := len(e.vms()); n != 1 {
		t.Errorf("%d rows after a refusal", n)
	}
	if e.hv.called("Start") != 1 {
		t.Errorf("a refused VM was started")
	}
	// Children pay for what they write; the host's available memory bounds
	// how many start at once.
	e.m.cfg.Host.Available = func() int { return 3 * childReserveMiB }
	v := e.vms()[0]
	if _, err := e.m.Branch(e.ctx(), v.ID, "", 4); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("4 children with room for 3: %v", err)
	}
	if _, err := e.m.Branch(e.ctx(), v.ID, "", 3); err != nil {
		t.Fatalf("3 children with room for 3: %v", err)
	}
}

func TestBranch(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(method(clone), func(t *testing.T) {
			e := newEnv(t, clone)
			p := e.create("root")
			res, err := e.m.Branch(e.ctx(), "root", "kid", 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Children) != 3 || res.Children[0].Alias != "kid-1" || res.Children[2].Alias != "kid-3" {
				t.Fatalf("children %+v", res.Children)
			}
			for _, k := range res.Children {
				if k.State != api.StateRunning || k.ParentID != p.ID {
					t.Errorf("child %+v", k)
				}
				if _, err := e.m.Get(e.ctx(), k.ID); err != nil {
					t.Error(err)
				}
				// Every child answers commands.
				out := execOut(t, e, k.ID, "echo hello")
				if strings.TrimSpace(out) != "hello" {
					t.Errorf("exec in child: %q", out)
				}
			}
			if got := e.hv.inst(p.ID).status; got != "running" {
				t.Errorf("parent is %s after the branch", got)
			}
			sn := e.snapshots()
			if len(sn) != 1 || sn[0].Phase != store.PhaseReady {
				t.Fatalf("snapshots %+v", sn)
			}
			// The parent runs on its next overlay, over the snapshot's layer.
			pc := e.hv.inst(p.ID).Config()
			if pc.Disk != sn[0].NextDisk {
				t.Errorf("parent disk %s, want %s", pc.Disk, sn[0].NextDisk)
			}
			if _, err := os.Stat(sn[0].Layer); err != nil {
				t.Errorf("layer: %v", err)
			}
			if clone && e.hv.called("Start:holder") != 0 {
				t.Error("the clone method started a holder")
			}
			if !clone && e.hv.called("Start:holder") != 1 {
				t.Error("the copy method started no holder")
			}
			if clone && e.ram.flushed == 0 {
				t.Error("the clone method did not flush the parent's RAM before the pause")
			}
			// A child branches like its parent.
			if _, err := e.m.Branch(e.ctx(), "kid-2", "grandkid", 1); err != nil {
				t.Fatalf("branch a child: %v", err)
			}
		})
	}
}

func method(clone bool) string {
	if clone {
		return "clone"
	}
	return "copy"
}

func execOut(t *testing.T, e *env, ref, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := e.m.Exec(ctx, ref, agent.ExecRequest{Shell: cmd})
	if err != nil {
		t.Fatalf("exec %q in %s: %v", cmd, ref, err)
	}
	var b strings.Builder
	done := make(chan struct{})
	go func() { defer close(done); readAll(p.Stderr()) }()
	readInto(&b, p.Stdout())
	<-done
	if _, err := p.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	return b.String()
}

func readAll(r interface{ Read([]byte) (int, error) }) {
	buf := make([]byte, 4096)
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}

func readInto(b *strings.Builder, r interface{ Read([]byte) (int, error) }) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return
		}
	}
}

// failStep is one step of a branch made to fail.
type failStep struct {
	name     string
	set      func(e *env, on bool)
	switched bool // the failure comes after the parent's disk moved
}

// branchSteps are the steps of a branch by a RAM method (clone or copy)
// that can fail, in order.
func branchSteps(clone bool) []failStep {
	type step = failStep
	hv := func(op string, switched bool) step {
		return step{op, func(e *env, on bool) {
			var err error
			if on {
				err = errBoom
			}
			e.hv.fail(op, err)
		}, switched}
	}
	fp := func(point string, switched bool) step {
		return step{point, func(e *env, on bool) { e.failAt(point, on) }, switched}
	}
	common := []step{
		fp("branch.reserve", false),
		hv("CreateOverlay", false),
		hv("AddOverlay:parent", false),
		fp("branch.before-freeze", false),
		hv("Pause:parent", false),
		fp("branch.in-pause", false),
		hv("SwitchDisk:parent", false),
		fp("branch.after-freeze", true),
		hv("Start:child", true),
		hv("LoadState:child", true),
		hv("Cont:child", true),
		fp("branch.child-start", true),
		fp("branch.record", true),
	}
	perMethod := map[bool][]step{
		true: {
			{"Flush", func(e *env, on bool) { e.ram.setFail("Flush", on) }, false},
			{"Clone", func(e *env, on bool) { e.ram.setFail("Clone", on) }, true},
			{"CloneOver", func(e *env, on bool) { e.ram.setFail("CloneOver", on) }, true},
			hv("SaveState:parent", true),
		},
		false: {
			hv("Start:holder", false),
			hv("ListenRAM:holder", false),
			hv("SendRAM:parent", true),
			hv("WaitRAMSent:parent", true),
			hv("SaveState:holder", true),
		},
	}
	return append(common, perMethod[clone]...)
}

// TestBranchUndoesEveryStep fails each step of a branch in turn, for both
// ways of freezing RAM. The parent always runs on afterwards; no child is
// left (row, file, process); before the disk switch no snapshot is left,
// after it the snapshot stays as the parent's layer; and the next branch
// works.
func TestBranchUndoesEveryStep(t *testing.T) {
	for _, clone := range []bool{true, false} {
		for _, s := range branchSteps(clone) {
			t.Run(method(clone)+"/"+s.name, func(t *testing.T) {
				e := newEnv(t, clone)
				p := e.create("root")
				before := e.files()
				s.set(e, true)
				_, err := e.m.Branch(e.ctx(), "root", "kid", 2)
				if err == nil {
					t.Fatal("branch succeeded")
				}
				s.set(e, false)
				checkAfterFailedBranch(t, e, p, before, s.switched, api.StateRunning)
				// The parent can still be branched.
				if _, err := e.m.Branch(e.ctx(), "root", "kid", 2); err != nil {
					t.Fatalf("branch after a failed one: %v", err)
				}
			})
		}
	}
}

// checkAfterFailedBranch checks what a failed branch of p leaves: p alone,
// in state (running, or paused if a user paused it), its guest running or
// stopped accordingly, and the snapshot only if the parent's disk moved.
func checkAfterFailedBranch(t *testing.T, e *env, p api.VM, before []string, switched bool, state string) {
	t.Helper()
	vms := e.vms()
	if len(vms) != 1 || vms[0].ID != p.ID || vms[0].State != state {
		t.Fatalf("rows after a failed branch: %+v", vms)
	}
	if r := e.hv.running(); len(r) != 1 || r[0] != p.ID {
		t.Errorf("processes after a failed branch: %v", r)
	}
	if st := e.hv.inst(p.ID).getStatus(); (st == "running") != (state == api.StateRunning) {
		t.Errorf("parent %s is %s after a failed branch", state, st)
	}
	if n := e.hv.inst(p.ID).openNodes(); n != 0 {
		t.Errorf("the parent's QEMU keeps %d disk layers opened for a switch that did not come", n)
	}
	sn := e.snapshots()
	after := e.files()
	if !switched {
		if len(sn) != 0 {
			t.Errorf("snapshots left before the switch: %+v", sn)
		}
		if !slices.Equal(before, after) {
			t.Errorf("files before %v, after %v", before, after)
		}
		return
	}
	if len(sn) != 1 {
		t.Fatalf("after the switch the snapshot is the parent's layer: %+v", sn)
	}
	if d := e.hv.inst(p.ID).Config().Disk; d != sn[0].NextDisk {
		t.Errorf("parent disk %s, want %s", d, sn[0].NextDisk)
	}
	for _, f := range after {
		if strings.Contains(f, "vms/") && !strings.Contains(f, "vms/"+p.ID) {
			t.Errorf("a child's file is left: %s", f)
		}
	}
}

func (r *fakeRAM) setFail(op string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.fails[op] = errBoom
	} else {
		delete(r.fails, op)
	}
}

func TestKill(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(method(clone), func(t *testing.T) {
			e := newEnv(t, clone)
			e.create("root")
			if _, err := e.m.Branch(e.ctx(), "root", "kid", 2); err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.Kill(e.ctx(), "root", false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "-r") {
				t.Fatalf("kill of a parent without -r: %v", err)
			}
			if n := len(e.vms()); n != 3 {
				t.Fatalf("a refused kill removed VMs: %d left", n)
			}
			// Killing a child leaves its parent and sibling running.
			if _, err := e.m.Kill(e.ctx(), "kid-1", false); err != nil {
				t.Fatal(err)
			}
			if n := len(e.hv.running()); n != 2 {
				t.Errorf("%d processes after killing one child of three VMs", n)
			}
			ids, err := e.m.Kill(e.ctx(), "root", true)
			if err != nil || len(ids) != 2 {
				t.Fatalf("kill -r: %v %v", ids, err)
			}
			if f := e.files(); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
			if sn := e.snapshots(); len(sn) != 0 {
				t.Errorf("snapshots left: %+v", sn)
			}
			if _, err := e.m.Kill(e.ctx(), "root", false); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("kill of a killed VM: %v", err)
			}
		})
	}
}

// TestKillPartialReportsDeleted: a kill -r that fails part way says which
// VMs it removed, so the caller can forget them.
func TestKillPartialReportsDeleted(t *testing.T) {
	e := newEnv(t, true)
	e.create("root")
	if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err != nil {
		t.Fatal(err)
	}
	kid := e.vms()[1]
	// The child goes first; the parent's removal fails.
	calls := 0
	e.m.failpoint = func(p string) error {
		if p == "kill.files" {
			if calls++; calls == 2 {
				return errBoom
			}
		}
		return nil
	}
	ids, err := e.m.Kill(e.ctx(), "root", true)
	var ke *KillError
	if !errors.As(err, &ke) || len(ke.Deleted) != 1 || ke.Deleted[0] != kid.ID || len(ids) != 1 {
		t.Fatalf("partial kill: ids %v, err %v", ids, err)
	}
	// Repeating it finishes the job.
	e.m.failpoint = nil
	if _, err := e.m.Kill(e.ctx(), "root", true); err != nil {
		t.Fatal(err)
	}
}

// TestHungVMBlocksNoOther: a VM whose QEMU stops answering (kill -STOP)
// stalls only the operations on it, which end with a clear error; every
// other VM can be created, branched and killed meanwhile, and the hung VM
// is reported as such and can always be killed.
func TestHungVMBlocksNoOther(t *testing.T) {
	e := newEnv(t, true)
	hung := e.create("hung")
	e.create("other")
	e.create("third")
	e.hv.inst(hung.ID).setHung(true)
	branchDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		_, err := e.m.Branch(ctx, "hung", "", 1)
		branchDone <- err
	}()
	waitFor(t, func() bool { return e.hv.called("Status:parent") > 0 })

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		_, err := e.m.Create(e.ctx(), Spec{MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default"})
		errs <- err
	}()
	go func() { defer wg.Done(); _, err := e.m.Branch(e.ctx(), "other", "", 1); errs <- err }()
	go func() { defer wg.Done(); _, err := e.m.Kill(e.ctx(), "third", false); errs <- err }()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("an operation on another VM failed: %v", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("operations on other VMs took %s while one VM hangs", d)
	}
	err := <-branchDone
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "not answering") {
		t.Errorf("the hung VM's branch: %v", err)
	}
	if e.hv.called("Start:child") != 1 {
		t.Errorf("%d children started: the hung VM's branch must start none", e.hv.called("Start:child"))
	}
	// Reported as such, and killed at once.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	e.m.checkAll(ctx)
	cancel()
	if v, _ := e.m.Get(e.ctx(), "hung"); v.State != api.StateUnresponsive {
		t.Errorf("hung VM shows %q", v.State)
	}
	start = time.Now()
	if _, err := e.m.Kill(e.ctx(), hung.ID, false); err != nil {
		t.Fatalf("kill of a hung VM: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("kill of a hung VM took %s", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if poll.Until(ctx, time.Millisecond, func() (bool, error) { return cond(), nil }) != nil {
		t.Fatal("condition not reached in 5s")
	}
}

// TestExecBadRequestKeepsSessions: a request the guest refuses is an
// invalid-input error and leaves the VM's session, and the commands
// running on it, alone.
func TestExecBadRequestKeepsSessions(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long, err := e.m.Exec(ctx, v.ID, agent.ExecRequest{Shell: "read line; echo got $line"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Exec(e.ctx(), v.ID, agent.ExecRequest{Shell: "true", Env: []string{"NOEQUALS"}})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("bad env: %v, want invalid input", err)
	}
	if strings.Contains(errdefs.Message(err), "invalid request: invalid") {
		t.Errorf("message repeats its kind: %q", errdefs.Message(err))
	}
	// The first command still runs on the same session.
	if _, err := long.Stdin().Write([]byte("yes\n")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	go readAll(long.Stderr())
	readInto(&b, long.Stdout())
	if _, err := long.Wait(); err != nil || strings.TrimSpace(b.String()) != "got yes" {
		t.Fatalf("the running command: %q %v", b.String(), err)
	}
	if e.dials != 1 {
		t.Errorf("%d dials: a bad request dropped the session", e.dials)
	}
}

// TestExecEndsWithContext: when the client goes away (its context ends),
// the guest process is killed within a second.
func TestExecEndsWithContext(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	pidFile := filepath.Join(e.home, "loop.pid")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := e.m.Exec(ctx, v.ID, agent.ExecRequest{Shell: "echo $$ > " + pidFile + "; while true; do sleep 0.05; done"})
	if err != nil {
		t.Fatal(err)
	}
	go readAll(p.Stdout())
	go readAll(p.Stderr())
	var pid int
	waitFor(t, func() bool {
		b, _ := os.ReadFile(pidFile)
		_, err := fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	cancel()
	gone := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(b), ") Z ")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if poll.Until(ctx2, 10*time.Millisecond, func() (bool, error) { return gone(), nil }) != nil {
		t.Fatalf("guest process %d still runs a second after its client went", pid)
	}
}

// TestOneDialAtATime: callers that find no session wait for one dial
// instead of racing each other for the guest's one channel.
func TestOneDialAtATime(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	e.m.machine(v.ID).closeAgent()
	e.dials = 0
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			execOut(t, e, v.ID, "true")
		}()
	}
	wg.Wait()
	if e.dials != 1 {
		t.Errorf("%d dials for 6 callers", e.dials)
	}
}

// TestDiskFull: a VM that QEMU paused on a full host disk says so, fails
// commands at once with that reason, and runs again once there is room.
func TestDiskFull(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	in := e.hv.inst(v.ID)
	in.setStatus("io-error")
	e.free = 10
	e.m.checkAll(context.Background())
	got, _ := e.m.Get(e.ctx(), "web")
	if got.State != api.StatePaused || !strings.Contains(got.StateReason, "disk full") {
		t.Fatalf("state %q (%q)", got.State, got.StateReason)
	}
	start := time.Now()
	_, err := e.m.Exec(e.ctx(), "web", agent.ExecRequest{Shell: "true"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "disk full") || time.Since(start) > time.Second {
		t.Fatalf("exec on a VM paused by a full disk: %v (after %s)", err, time.Since(start))
	}
	if _, err := e.m.Branch(e.ctx(), "web", "", 1); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("branch on a VM paused by a full disk: %v", err)
	}
	e.m.checkAll(context.Background())
	if in.status != "io-error" {
		t.Fatal("resumed with no room")
	}
	if e.hv.called("RotateLogs:parent") == 0 {
		t.Error("the watch does not keep the console log bounded")
	}
	e.free = 10_000
	e.m.checkAll(context.Background())
	if in.status != "running" {
		t.Fatalf("not resumed with room: %s", in.status)
	}
	if got, _ := e.m.Get(e.ctx(), "web"); got.State != api.StateRunning {
		t.Fatalf("state after resume: %q", got.State)
	}
	execOut(t, e, "web", "true")
}

// TestExitedShowsDead: a VM whose process is gone shows dead at once, not
// at the next check.
func TestExitedShowsDead(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	e.hv.inst(v.ID).exit()
	got, _ := e.m.Get(e.ctx(), "web")
	if got.State != api.StateDead {
		t.Fatalf("state %q right after its process exited", got.State)
	}
	if _, err := e.m.Exec(e.ctx(), "web", agent.ExecRequest{Shell: "true"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("exec in a dead VM: %v", err)
	}
	e.m.checkAll(context.Background())
	if r, _ := e.st.GetVM(e.ctx(), v.ID); r.State != api.StateDead {
		t.Fatalf("recorded %q", r.State)
	}
	if _, err := e.m.Kill(e.ctx(), "web", false); err != nil {
		t.Fatal(err)
	}
}

// TestGuestReboot: a guest that reboots comes back as the same VM; one that
// keeps resetting (a panic at boot) is left dead.
func TestGuestReboot(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("web")
	if _, err := e.m.Branch(e.ctx(), "web", "kid", 1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "kid"} {
		got, _ := e.m.Get(e.ctx(), name)
		pid := got.PID
		e.hv.inst(got.ID).reboot()
		e.m.checkAll(context.Background())
		after, _ := e.m.Get(e.ctx(), name)
		if after.ID != got.ID || after.State != api.StateRunning || after.PID == pid {
			t.Fatalf("%s after its reboot: %+v (before: pid %d)", name, after, pid)
		}
		if cfg := e.hv.inst(got.ID).Config(); cfg.Incoming {
			t.Errorf("%s rebooted waiting for an incoming state", name)
		}
		execOut(t, e, name, "true")
	}
	for range rebootBudget {
		e.hv.inst(v.ID).reboot()
		e.m.checkAll(context.Background())
	}
	if got, _ := e.m.Get(e.ctx(), "web"); got.State != api.StateDead {
		t.Fatalf("a VM that resets %d times in a row is %q", rebootBudget+1, got.State)
	}
}

func TestNetworkModes(t *testing.T) {
	e := newEnv(t, true)
	_, err := e.m.Create(e.ctx(), Spec{MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default", Network: "bridged"})
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "none") {
		t.Fatalf("bad network mode: %v", err)
	}
	v, err := e.m.Create(e.ctx(), Spec{Alias: "off", MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default", Network: "none"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.m.Branch(e.ctx(), v.ID, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.hv.inst(res.Children[0].ID).Config().Network; got != "none" {
		t.Errorf("a child of a VM without network has network %q", got)
	}
}

// TestExecFixedLayout: the manager's FixedLayout reaches every exec's agent
// request (the guest then starts the program without randomization).
func TestExecFixedLayout(t *testing.T) {
	e := newEnv(t, true)
	e.create("web")
	for _, fixed := range []bool{true, false} {
		e.m.cfg.FixedLayout = fixed
		want := "00000000"
		if fixed {
			want = "00040000"
		}
		if got := strings.TrimSpace(execOut(t, e, "web", "cat /proc/self/personality")); got != want {
			t.Errorf("FixedLayout %v: personality %s, want %s", fixed, got, want)
		}
	}
}
