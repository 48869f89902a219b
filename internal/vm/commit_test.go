package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/poll"
)

// failingBackend fails Put with err once armed (a disk that fills).
type failingBackend struct {
	chunk.Backend
	err error
}

func (f *failingBackend) Put(ctx context.Context, h chunk.Hash, b []byte) error {
	if f.err != nil {
		return f.err
	}
	return f.Backend.Put(ctx, h, b)
}

func (e *env) commit(ref, tag string) api.Commit {
	e.t.Helper()
	res, err := e.m.Commit(e.ctx(), ref, CommitOptions{Tag: tag, Message: "m"})
	if err != nil {
		e.t.Fatalf("commit %s: %v", ref, err)
	}
	return res.Commit
}

// holds lists who holds references without being a VM (operations under way).
func (e *env) holds() []string {
	e.t.Helper()
	h, err := e.st.HoldersLike(context.Background(), holdPrefix)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (e *env) exec(ref, cmd string) string {
	e.t.Helper()
	return execOut(e.t, e, ref, cmd)
}

func TestCommitAndRunCommit(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(fmt.Sprintf("clone=%v", clone), func(t *testing.T) {
			e := newEnv(t, clone)
			src := e.create("db")
			c := e.commit("db", "ready")
			if c.Kind != api.CommitKindCommit || c.SourceVM != src.ID || len(c.Tags) != 1 || c.LogicalBytes == 0 {
				t.Fatalf("commit %+v", c)
			}
			if v, _ := e.m.Get(e.ctx(), "db"); v.State != api.StateRunning || v.LastCommit != c.ID {
				t.Fatalf("source after commit: %+v", v)
			}
			if h := e.holds(); len(h) != 0 {
				t.Errorf("holds left after the commit: %v", h)
			}
			for _, sn := range e.snapshots() {
				if _, err := os.Stat(sn.MemPath); err == nil {
					t.Errorf("snapshot RAM %s kept after the commit", sn.MemPath)
				}
			}
			second := e.commit("db", "")
			if second.Parent != c.ID {
				t.Errorf("second commit's parent %q, want %q", second.Parent, c.ID)
			}
			// The source goes: its layers with it; the commit brings them back.
			if _, err := e.m.Kill(e.ctx(), "db", false); err != nil {
				t.Fatal(err)
			}
			res, err := e.m.RunCommit(e.ctx(), "ready", "again", 2)
			if err != nil {
				t.Fatalf("run-commit: %v", err)
			}
			if len(res.VMs) != 2 || res.Restore == 0 {
				t.Fatalf("run-commit %+v", res)
			}
			for _, v := range res.VMs {
				if v.State != api.StateRunning || v.OriginCommit != c.ID || v.ParentID != "" {
					t.Errorf("restored vm %+v", v)
				}
				if out := e.exec(v.Alias, "echo up"); out != "up\n" {
					t.Errorf("exec in %s: %q", v.Alias, out)
				}
			}
			if e.hv.called("Rebase") == 0 {
				t.Error("the disk's layers were not brought back from the chunk store")
			}
			// Again: from the snapshot already on this host.
			res2, err := e.m.RunCommit(e.ctx(), c.ID[:10], "third", 1)
			if err != nil || res2.Restore != 0 {
				t.Fatalf("second run-commit: %+v %v", res2, err)
			}
			if h := e.holds(); len(h) != 0 {
				t.Errorf("holds left after run-commit: %v", h)
			}
			for _, v := range append(res.VMs, res2.VMs...) {
				if _, err := e.m.Kill(e.ctx(), v.ID, false); err != nil {
					t.Fatal(err)
				}
			}
			if sn := e.snapshots(); len(sn) != 0 {
				t.Errorf("snapshots left once every VM is gone: %+v", sn)
			}
		})
	}
}

// TestCommitFailureLeavesNothing fails each step of a commit in turn: no
// commit is recorded, no chunk is left, the VM runs on.
func TestCommitFailureLeavesNothing(t *testing.T) {
	steps := []struct {
		name string
		arm  func(e *env, fb *failingBackend)
		kind error
	}{
		{"disk full", func(e *env, fb *failingBackend) { fb.err = fmt.Errorf("write chunk: %w", syscall.ENOSPC) }, errdefs.ErrNoSpace},
		{"RAM", func(e *env, fb *failingBackend) { e.failAt("commit.ram", true) }, nil},
		{"before sync", func(e *env, fb *failingBackend) { e.failAt("commit.before-sync", true) }, nil},
		{"freeze", func(e *env, fb *failingBackend) { e.hv.fail("SaveState", errBoom) }, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, true)
			fb := &failingBackend{Backend: e.m.cfg.Chunks.Backend()}
			e.m.cfg.Chunks = chunk.New(fb)
			e.create("db")
			s.arm(e, fb)
			_, err := e.m.Commit(e.ctx(), "db", CommitOptions{Tag: "t"})
			if err == nil {
				t.Fatal("commit succeeded")
			}
			if s.kind != nil && !errors.Is(err, s.kind) {
				t.Errorf("error %v, want %v", err, s.kind)
			}
			if list, _ := e.m.Commits(e.ctx()); len(list) != 0 {
				t.Errorf("commits recorded: %+v", list)
			}
			if n, _, _ := e.m.cfg.Chunks.Usage(e.ctx()); n != 0 {
				t.Errorf("%d chunks left", n)
			}
			if h := e.holds(); len(h) != 0 {
				t.Errorf("holds left: %v", h)
			}
			if st, _ := e.hv.inst(e.vms()[0].ID).Status(e.ctx()); st != "running" {
				t.Errorf("vm %s after a failed commit", st)
			}
			fb.err = nil
			e.failAt("commit.ram", false)
			e.failAt("commit.before-sync", false)
			e.hv.fail("SaveState", nil)
			e.commit("db", "t")
		})
	}
}

func TestCommitBadInput(t *testing.T) {
	e := newEnv(t, true)
	e.create("db")
	c := e.commit("db", "ready")
	pauses := e.hv.called("Pause")
	if _, err := e.m.Commit(e.ctx(), "db", CommitOptions{Tag: "ready"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("existing tag: %v", err)
	}
	if e.hv.called("Pause") != pauses {
		t.Error("a commit refused for its tag paused the VM")
	}
	if _, err := e.m.Commit(e.ctx(), "db", CommitOptions{Tag: "abcdef0123"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("id-like tag: %v", err)
	}
	if _, err := e.m.RunCommit(e.ctx(), "nope", "", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown commit: %v", err)
	}
	if _, err := e.m.SetTag(e.ctx(), "ready", c.ID, false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("tag create over a tag: %v", err)
	}
	if _, err := e.m.SetTag(e.ctx(), "ready", c.ID, true); err != nil {
		t.Errorf("tag mv: %v", err)
	}
	if _, err := e.m.RunCommit(e.ctx(), "ready", "db", 1); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("alias taken: %v", err)
	}
	if r := e.hv.running(); len(r) != 1 {
		t.Errorf("processes after refused run-commits: %v", r)
	}
}

func TestCorruptChunkFailsRestore(t *testing.T) {
	e := newEnv(t, true)
	e.create("db")
	c := e.commit("db", "")
	// Corrupt every stored chunk but the manifest's: the RAM is among them.
	dir := filepath.Join(e.home, "chunks")
	sc, _ := e.st.GetCommit(e.ctx(), c.ID)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.Contains(sc.Manifest, filepath.Base(p)) {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.Chmod(p, 0o600)
			os.WriteFile(p, b, 0o600)
		}
		return nil
	})
	if _, err := e.m.Kill(e.ctx(), "db", false); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.RunCommit(e.ctx(), c.ID, "x", 1)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("restore of a corrupt commit: %v", err)
	}
	if r := e.hv.running(); len(r) != 0 {
		t.Errorf("processes left: %v", r)
	}
	if v := e.vms(); len(v) != 0 {
		t.Errorf("rows left: %+v", v)
	}
	if sn := e.snapshots(); len(sn) != 0 {
		t.Errorf("snapshots left: %+v", sn)
	}
}

func TestSleepWake(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(fmt.Sprintf("clone=%v", clone), func(t *testing.T) {
			e := newEnv(t, clone)
			v := e.create("app")
			for i := range 3 {
				s, err := e.m.Sleep(e.ctx(), "app")
				if err != nil {
					t.Fatalf("sleep %d: %v", i, err)
				}
				if s.State != api.StateSleeping || e.hv.inst(v.ID) != nil && !e.hv.inst(v.ID).isExited() {
					t.Fatalf("sleep %d: %+v, process %v", i, s, e.hv.running())
				}
				if _, err := e.m.Exec(e.ctx(), "app", agent.ExecRequest{Shell: "true"}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "vers wake") {
					t.Errorf("exec in a sleeping vm: %v", err)
				}
				if _, err := e.m.RemoveCommits(e.ctx(), []string{s.LastCommit}); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "app") {
					t.Errorf("rm of a sleeping vm's commit: %v", err)
				}
				w, err := e.m.Wake(e.ctx(), "app")
				if err != nil {
					t.Fatalf("wake %d: %v", i, err)
				}
				if w.ID != v.ID || w.State != api.StateRunning || w.Alias != "app" {
					t.Fatalf("woken %+v", w)
				}
				if out := e.exec("app", "echo awake"); out != "awake\n" {
					t.Fatalf("exec after wake %d: %q", i, out)
				}
			}
			if list, _ := e.m.Commits(e.ctx()); len(list) != 0 {
				t.Errorf("sleep commits kept after the wakes: %+v", list)
			}
			if _, err := e.m.Wake(e.ctx(), "app"); !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("wake of a running vm: %v", err)
			}
			if _, err := e.m.Kill(e.ctx(), "app", false); err != nil {
				t.Fatal(err)
			}
			if f := e.files(); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
		})
	}
}

// TestSleepInterrupted: a daemon that dies after the sleep is recorded
// finds the VM asleep, its QEMU stopped; one that dies before finds it awake.
func TestSleepInterruptedRecovers(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("app")
	e.commit("app", "")
	// The row says it sleeps, but its QEMU still runs (a crash between the two).
	row, _ := e.st.GetVM(e.ctx(), v.ID)
	row.State = api.StateSleeping
	if err := e.st.UpdateVM(e.ctx(), row); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if r := e.hv.running(); len(r) != 0 {
		t.Fatalf("a sleeping vm's qemu runs after recovery: %v", r)
	}
	if _, err := e.m.Wake(e.ctx(), "app"); err != nil {
		t.Fatalf("wake after recovery: %v", err)
	}
}

func TestRemoveAndGC(t *testing.T) {
	e := newEnv(t, true)
	e.create("db")
	var ids []string
	for i := range 4 {
		tag := ""
		if i == 0 {
			tag = "first"
		}
		ids = append(ids, e.commit("db", tag).ID)
	}
	u, err := e.m.Usage(e.ctx())
	if err != nil || u.Commits != 4 || u.StoredBytes == 0 || u.LogicalBytes == 0 {
		t.Fatalf("usage %+v %v", u, err)
	}
	res, err := e.m.GC(e.ctx(), api.GCRequest{KeepLast: 1, DryRun: true})
	if err != nil || len(res.Removed) != 2 || slices.Contains(res.Removed, ids[0]) || slices.Contains(res.Removed, ids[3]) {
		t.Fatalf("gc dry run %+v %v", res, err)
	}
	if list, _ := e.m.Commits(e.ctx()); len(list) != 4 {
		t.Fatal("a dry run removed commits")
	}
	if _, err := e.m.GC(e.ctx(), api.GCRequest{KeepLast: 1}); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.m.Commits(e.ctx()); len(list) != 2 {
		t.Fatalf("after gc: %d commits", len(list))
	}
	removed, err := e.m.RemoveCommits(e.ctx(), []string{"first", ids[3][:12]})
	if err != nil || len(removed) != 2 {
		t.Fatalf("rm %v %v", removed, err)
	}
	if n, _, _ := e.m.cfg.Chunks.Usage(e.ctx()); n != 0 {
		t.Errorf("%d chunks left with no commit", n)
	}
	if _, err := e.m.RemoveCommits(e.ctx(), []string{"first"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("rm of a removed commit: %v", err)
	}
}

func TestExportImport(t *testing.T) {
	a := newEnv(t, true)
	a.create("db")
	c := a.commit("db", "")
	var buf bytes.Buffer
	if err := a.m.Export(a.ctx(), c.ID, &buf); err != nil {
		t.Fatal(err)
	}
	b := newEnv(t, true)
	res, err := b.m.Import(b.ctx(), bytes.NewReader(buf.Bytes()))
	if err != nil || res.Commit.ID != c.ID || res.NewChunks == 0 {
		t.Fatalf("import %+v %v", res, err)
	}
	again, err := b.m.Import(b.ctx(), bytes.NewReader(buf.Bytes()))
	if err != nil || again.NewChunks != 0 {
		t.Fatalf("second import %+v %v", again, err)
	}
	run, err := b.m.RunCommit(b.ctx(), c.ID, "copy", 1)
	if err != nil {
		t.Fatalf("run-commit of an imported commit: %v", err)
	}
	if out := b.exec("copy", "echo here"); out != "here\n" {
		t.Errorf("exec: %q", out)
	}
	_ = run
	if _, err := b.m.Import(b.ctx(), bytes.NewReader(buf.Bytes()[:buf.Len()/2])); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("truncated archive: %v", err)
	}
}

func TestRestoreInPlace(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(fmt.Sprintf("clone=%v", clone), func(t *testing.T) {
			e := newEnv(t, clone)
			v := e.create("app")
			c := e.commit("app", "base")
			r, err := e.m.Restore(e.ctx(), "app", "base")
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if r.ID != v.ID || r.Alias != "app" || r.PID == v.PID || r.OriginCommit != c.ID || r.State != api.StateRunning {
				t.Fatalf("restored %+v (was %+v)", r, v)
			}
			if got := e.hv.running(); len(got) != 1 {
				t.Fatalf("processes after restore: %v", got)
			}
			if out := e.exec("app", "echo back"); out != "back\n" {
				t.Fatalf("exec after restore: %q", out)
			}
			// Twice, then a daemon restart: one machine, the last.
			if _, err := e.m.Restore(e.ctx(), "app", c.ID); err != nil {
				t.Fatalf("second restore: %v", err)
			}
			e.restart()
			if got := e.hv.running(); len(got) != 1 {
				t.Fatalf("processes after restart: %v", got)
			}
			if out := e.exec("app", "echo still"); out != "still\n" {
				t.Fatalf("exec after restart: %q", out)
			}
			if _, err := e.m.Kill(e.ctx(), "app", false); err != nil {
				t.Fatal(err)
			}
			if f := e.files(); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
			if r := e.hv.running(); len(r) != 0 {
				t.Errorf("processes left: %v", r)
			}
		})
	}
}

// TestRestoreFailureKeepsTheVM fails each step of a restore in place: the
// VM runs on as it was, nothing of the attempt is left.
func TestRestoreFailureKeepsTheVM(t *testing.T) {
	steps := []struct {
		name string
		arm  func(e *env)
	}{
		{"materialize", func(e *env) { e.failAt("restore.ram", true) }},
		{"before start", func(e *env) { e.failAt("restore.start", true) }},
		{"start", func(e *env) { e.hv.fail("Start:child", errBoom) }},
		{"load", func(e *env) { e.hv.fail("LoadState", errBoom) }},
		{"switch", func(e *env) { e.failAt("restore.switch", true) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, true)
			v := e.create("app")
			e.commit("app", "base")
			before := e.files()
			s.arm(e)
			if _, err := e.m.Restore(e.ctx(), "app", "base"); err == nil {
				t.Fatal("restore succeeded")
			}
			now, _ := e.m.Get(e.ctx(), "app")
			if now.PID != v.PID || now.State != api.StateRunning || now.OriginCommit != "" {
				t.Errorf("vm after a failed restore: %+v", now)
			}
			if got := e.hv.running(); len(got) != 1 || got[0] != v.ID {
				t.Errorf("processes: %v", got)
			}
			if out := e.exec("app", "echo same"); out != "same\n" {
				t.Errorf("exec: %q", out)
			}
			if f := e.files(); !slices.Equal(f, before) {
				t.Errorf("files before %v, after %v", before, f)
			}
		})
	}
}

// TestSleepCrashBeforeRecordResumes: a daemon that died between a sleep's
// freeze (which leaves the VM stopped) and its record finds the VM
// recorded running and stopped, and runs it again.
func TestSleepCrashBeforeRecordResumes(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("app")
	e.hv.inst(v.ID).setStatus("paused")
	e.restart()
	if st, _ := e.hv.inst(v.ID).Status(e.ctx()); st != "running" {
		t.Fatalf("after the restart the vm is %s", st)
	}
	if out := e.exec("app", "echo on"); out != "on\n" {
		t.Fatalf("exec: %q", out)
	}
}

func TestKillSleepingVM(t *testing.T) {
	e := newEnv(t, true)
	e.create("app")
	kept := e.commit("app", "kept")
	if _, err := e.m.Sleep(e.ctx(), "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Kill(e.ctx(), "app", false); err != nil {
		t.Fatal(err)
	}
	list, _ := e.m.Commits(e.ctx())
	if len(list) != 1 || list[0].ID != kept.ID {
		t.Errorf("commits after killing a sleeping vm: %+v (want only its tagged one)", list)
	}
	if sn := e.snapshots(); len(sn) != 0 {
		t.Errorf("snapshots left: %+v", sn)
	}
}

// TestInterruptedCommitRecovers: a daemon that died while writing a commit
// left its hold and some chunks; the next one drops the hold, collects the
// snapshot's RAM and the chunks, and the VM commits again.
func TestInterruptedCommitRecovers(t *testing.T) {
	e := newEnv(t, true)
	v := e.create("app")
	row, _ := e.st.GetVM(e.ctx(), v.ID)
	mc := e.m.machine(v.ID)
	b, err := e.m.branchLocked(e.ctx(), time.Now(), row, mc, nil, holdPrefix+"commit-"+v.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.m.cfg.Chunks.PutFile(e.ctx(), b.snap.MemPath, nil); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if h := e.holds(); len(h) != 0 {
		t.Fatalf("holds after the restart: %v", h)
	}
	if _, err := os.Stat(b.snap.MemPath); err == nil {
		t.Error("the interrupted commit's snapshot RAM is still there")
	}
	poll.Until(e.ctx(), 10*time.Millisecond, func() (bool, error) {
		n, _, err := e.m.cfg.Chunks.Usage(e.ctx())
		return n == 0, err
	})
	if n, _, _ := e.m.cfg.Chunks.Usage(e.ctx()); n != 0 {
		t.Errorf("%d chunks of the interrupted commit left", n)
	}
	e.commit("app", "")
}

// TestRunCommitAndWakeUndoEveryStep fails each step of a run-commit and of
// a wake in turn: a run-commit leaves no VM, no snapshot and no process; a
// wake leaves the VM asleep, and it wakes once the step works again.
func TestRunCommitAndWakeUndoEveryStep(t *testing.T) {
	steps := []struct {
		name string
		arm  func(e *env, on bool)
	}{
		{"restore RAM", func(e *env, on bool) { e.failAt("restore.ram", on) }},
		{"overlay", func(e *env, on bool) { e.hv.fail("CreateOverlay", errOr(on)) }},
		{"start", func(e *env, on bool) { e.hv.fail("Start:child", errOr(on)) }},
		{"load state", func(e *env, on bool) { e.hv.fail("LoadState", errOr(on)) }},
		{"agent", func(e *env, on bool) { e.failAt("branch.child-start", on) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, true)
			e.create("app")
			c := e.commit("app", "c")
			if _, err := e.m.Kill(e.ctx(), "app", false); err != nil {
				t.Fatal(err)
			}
			s.arm(e, true)
			if _, err := e.m.RunCommit(e.ctx(), "c", "x", 2); err == nil {
				t.Fatal("run-commit succeeded")
			}
			if vms := e.vms(); len(vms) != 0 {
				t.Errorf("rows left: %+v", vms)
			}
			if r := e.hv.running(); len(r) != 0 {
				t.Errorf("processes left: %v", r)
			}
			if sn := e.snapshots(); len(sn) != 0 {
				t.Errorf("snapshots left: %+v", sn)
			}
			s.arm(e, false)
			if _, err := e.m.RunCommit(e.ctx(), c.ID, "app", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.Sleep(e.ctx(), "app"); err != nil {
				t.Fatal(err)
			}
			s.arm(e, true)
			if _, err := e.m.Wake(e.ctx(), "app"); err == nil {
				t.Fatal("wake succeeded")
			}
			if w, _ := e.m.Get(e.ctx(), "app"); w.State != api.StateSleeping {
				t.Fatalf("after a failed wake the vm is %s", w.State)
			}
			if r := e.hv.running(); len(r) != 0 {
				t.Errorf("processes left by a failed wake: %v", r)
			}
			s.arm(e, false)
			if _, err := e.m.Wake(e.ctx(), "app"); err != nil {
				t.Fatalf("wake after the failure: %v", err)
			}
		})
	}
}

func errOr(on bool) error {
	if on {
		return errBoom
	}
	return nil
}

// TestStateConfigOfChildren: a branch's children load a state SaveState is
// yet to write, which has no configuration section; a VM restored from a
// state an earlier vers wrote by a migration, which begins with one, is
// started with StateConfig, or QEMU would refuse the state.
func TestStateConfigOfChildren(t *testing.T) {
	e := newEnv(t, true)
	e.create("db")
	c := e.commit("db", "ready")
	stateConfig := func(vm api.VM) bool {
		t.Helper()
		in := e.hv.inst(vm.ID)
		if in == nil {
			t.Fatalf("no QEMU for %s", vm.Alias)
		}
		return in.Config().StateConfig
	}
	res, err := e.m.Branch(e.ctx(), "db", "kid", 1)
	if err != nil {
		t.Fatal(err)
	}
	if stateConfig(res.Children[0]) {
		t.Error("a branch's child expects a configuration section")
	}
	run, err := e.m.RunCommit(e.ctx(), c.ID, "new", 1)
	if err != nil {
		t.Fatal(err)
	}
	if stateConfig(run.VMs[0]) {
		t.Error("a VM restored from SaveState's state expects a configuration section")
	}
	restored := ""
	for _, sn := range e.snapshots() {
		if sn.CommitID == c.ID {
			restored = sn.StatePath
		}
	}
	if restored == "" {
		t.Fatal("no snapshot of the restored commit on the host")
	}
	// As a migration writes it: magic, version 3, the configuration section.
	legacy := append([]byte("QEVM\x00\x00\x00\x03\x07"), "rest of a stream"...)
	if err := os.WriteFile(restored, legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	old, err := e.m.RunCommit(e.ctx(), c.ID, "old", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !stateConfig(old.VMs[0]) {
		t.Error("a VM restored from a migration's state was started without StateConfig")
	}
}
