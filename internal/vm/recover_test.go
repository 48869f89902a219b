package vm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"vers/api"
	"vers/internal/store"
)

// restart replaces the manager by a new one over the same store and host,
// as a restarted daemon, and recovers.
func (e *env) restart() {
	e.t.Helper()
	old := e.m
	old.mu.Lock()
	for _, mc := range old.live {
		mc.closeAgent()
	}
	old.mu.Unlock()
	e.m = New(old.cfg)
	e.m.failpoint = old.failpoint
	if err := e.m.Recover(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// interrupted leaves the store and host as a daemon killed in a branch of
// root leaves them: the snapshot recorded (phase prepared), its layer and
// the parent's next overlay made, a child row creating with a directory,
// and the parent stopped — its disk moved onto the next overlay or not.
func (e *env) interrupted(root api.VM, moved bool) store.Snapshot {
	e.t.Helper()
	ctx := context.Background()
	in := e.hv.inst(root.ID)
	pcfg := in.Config()
	sid := uuid.NewString()
	sn := store.Snapshot{ID: sid, SourceVM: root.ID, CreatedAt: time.Now(), Phase: store.PhasePrepared,
		Dir: filepath.Join(e.m.cfg.Layout.SnapshotsDir(), sid), MemPath: e.m.snapRAM(sid)}
	sn.Layer, sn.StatePath = filepath.Join(sn.Dir, "disk.qcow2"), filepath.Join(sn.Dir, "state")
	sn.NextDisk = filepath.Join(filepath.Dir(pcfg.Disk), "disk-"+sid[:8]+".qcow2")
	os.MkdirAll(sn.Dir, 0o700)
	if err := os.Link(pcfg.Disk, sn.Layer); err != nil {
		e.t.Fatal(err)
	}
	os.WriteFile(sn.NextDisk, []byte("overlay"), 0o600)
	kid := store.VM{ID: uuid.NewString(), State: api.StateCreating, ParentID: root.ID, MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "k", Rootfs: "r", CreatedAt: time.Now()}
	if err := e.st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateVM(ctx, kid); err != nil {
			return err
		}
		if err := tx.CreateSnapshot(ctx, sn); err != nil {
			return err
		}
		return tx.AddRef(ctx, store.Ref{VMID: root.ID, SnapshotID: sid, Kind: store.RefDisk})
	}); err != nil {
		e.t.Fatal(err)
	}
	os.MkdirAll(e.m.cfg.Layout.VMDir(kid.ID), 0o700)
	os.WriteFile(filepath.Join(e.m.cfg.Layout.VMDir(kid.ID), "disk.qcow2"), []byte("kid"), 0o600)
	in.setStatus("paused")
	if moved {
		top, err := in.AddOverlay(ctx, sn.NextDisk, "d")
		if err != nil {
			e.t.Fatal(err)
		}
		if err := in.SwitchDisk(ctx, top, "d"); err != nil {
			e.t.Fatal(err)
		}
	}
	return sn
}

func TestRecoverBranchBeforeTheSwitch(t *testing.T) {
	e := newEnv(t, true)
	root := e.create("root")
	before := e.files()
	e.interrupted(root, false)
	e.restart()
	vms := e.vms()
	if len(vms) != 1 || vms[0].ID != root.ID || vms[0].State != api.StateRunning {
		t.Fatalf("rows after recovery: %+v", vms)
	}
	if sn := e.snapshots(); len(sn) != 0 {
		t.Errorf("a branch that never froze left its snapshot: %+v", sn)
	}
	if after := e.files(); len(after) != len(before) {
		t.Errorf("files before %v, after %v", before, after)
	}
	if st := e.hv.inst(root.ID).status; st != "running" {
		t.Errorf("parent is %s after recovery", st)
	}
	if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err != nil {
		t.Fatalf("branch after recovery: %v", err)
	}
}

func TestRecoverBranchAfterTheSwitch(t *testing.T) {
	e := newEnv(t, true)
	root := e.create("root")
	oldDisk := e.hv.inst(root.ID).Config().Disk
	sn := e.interrupted(root, true)
	e.restart()
	vms := e.vms()
	if len(vms) != 1 || vms[0].State != api.StateRunning {
		t.Fatalf("rows after recovery: %+v", vms)
	}
	var cfg struct{ Disk string }
	json.Unmarshal([]byte(vms[0].Machine), &cfg)
	if cfg.Disk != sn.NextDisk {
		t.Errorf("recorded disk %s, QEMU writes %s", cfg.Disk, sn.NextDisk)
	}
	if _, err := os.Stat(oldDisk); !os.IsNotExist(err) {
		t.Errorf("the old top's VM-directory name is left: %v", err)
	}
	got := e.snapshots()
	if len(got) != 1 || got[0].Phase != store.PhaseReady {
		t.Fatalf("the snapshot is the parent's layer: %+v", got)
	}
	if _, err := os.Stat(got[0].Layer); err != nil {
		t.Fatalf("layer: %v", err)
	}
	if st := e.hv.inst(root.ID).status; st != "running" {
		t.Errorf("parent is %s after recovery", st)
	}
	if _, err := e.m.Branch(e.ctx(), "root", "kid", 1); err != nil {
		t.Fatalf("branch after recovery: %v", err)
	}
	if _, err := e.m.Kill(e.ctx(), "root", true); err != nil {
		t.Fatal(err)
	}
	if f := e.files(); len(f) != 0 {
		t.Errorf("files left: %v", f)
	}
}

func TestRecoverDeadAndLeftovers(t *testing.T) {
	e := newEnv(t, true)
	gone := e.create("gone")
	e.create("alive")
	e.hv.inst(gone.ID).exit()
	stray := filepath.Join(e.m.cfg.Layout.VMsDir(), uuid.NewString())
	os.MkdirAll(stray, 0o700)
	os.WriteFile(filepath.Join(stray, "disk.qcow2"), nil, 0o600)
	e.restart()
	if v, _ := e.m.Get(e.ctx(), "gone"); v.State != api.StateDead {
		t.Errorf("a VM whose QEMU went is %q", v.State)
	}
	if v, _ := e.m.Get(e.ctx(), "alive"); v.State != api.StateRunning {
		t.Errorf("a running VM is %q after recovery", v.State)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Error("a VM directory with no record is left")
	}
	// The re-attached VM answers (its agent is dialled on first use).
	execOut(t, e, "alive", "true")
}
