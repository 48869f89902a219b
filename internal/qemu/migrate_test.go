package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMigrateThroughFile runs the QMP sequence branching builds on: a paused
// parent's state goes to a file through getfd + migrate, its disk moves onto
// a new overlay with blockdev-snapshot-sync on the root node, and a child
// with the same command line plus -incoming defer loads the state and runs.
func TestMigrateThroughFile(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	parentCfg := testConfig(t)
	parentCfg.Disk = filepath.Join(work, "parent.qcow2")
	parentCfg.MemPath = filepath.Join(work, "parent.ram") // only to plant data in guest RAM
	makeDisk(t, parentCfg.Disk, 64)
	parent := startTest(t, parentCfg)
	planted := plantRAM(t, parentCfg.MemPath)

	if err := parent.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(work, "parent-next.qcow2")
	if err := parent.Execute(ctx, "blockdev-snapshot-sync", map[string]string{
		"node-name": RootNode, "snapshot-file": layer, "snapshot-node-name": "root-1", "format": "qcow2",
	}, nil); err != nil {
		t.Fatalf("blockdev-snapshot-sync on %q: %v", RootNode, err)
	}
	state, err := os.Create(filepath.Join(work, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "branch"}, state, nil); err != nil {
		t.Fatalf("getfd: %v", err)
	}
	state.Close()
	if err := parent.Execute(ctx, "migrate", map[string]string{"uri": "fd:branch"}, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	waitMigration(ctx, t, parent)
	if err := parent.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, parent, "running")

	// The child: an identical machine on its own overlay of the frozen layer.
	childCfg := testConfig(t)
	childCfg.Name += "c"
	childCfg.Disk = filepath.Join(work, "child.qcow2")
	// Same RAM backend as the parent (RAM block ids must match), fed by the stream.
	childCfg.MemPath = filepath.Join(work, "child.ram")
	childCfg.Incoming = true
	if err := CreateOverlay(ctx, parentCfg.Disk, "qcow2", childCfg.Disk, 0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(work, "state")); err != nil || fi.Size() < int64(len(planted)) {
		t.Fatalf("state file: %v; expected the guest RAM in it", err)
	}
	child := startTest(t, childCfg)
	expectStatus(t, child, "inmigrate")
	in, err := os.Open(filepath.Join(work, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := child.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "in"}, in, nil); err != nil {
		t.Fatal(err)
	}
	if err := child.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:in"}, nil); err != nil {
		t.Fatalf("migrate-incoming: %v", err)
	}
	for {
		st, err := child.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st == "paused" {
			break
		}
		if st != "inmigrate" {
			t.Fatalf("child status %q while loading, want inmigrate then paused", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, child, "running")
	if !bytes.Equal(guestRAM(t, child, plantAt, len(planted)), planted) {
		t.Error("the child's RAM does not hold the parent's")
	}
	child.Stop(ctx)
	parent.Stop(ctx)
}

// plantAt is a guest-physical address, below the end of the smallest test
// VM's RAM and far above anything firmware touches; in a memory file the
// offset of an address below 3 GiB is the address itself.
const plantAt = 32 * mib

// plantRAM writes 4 MiB of random bytes into guest RAM at plantAt through
// the VM's shared memory file, and returns them.
func plantRAM(t *testing.T, memPath string) []byte {
	t.Helper()
	data := make([]byte, 4*mib)
	rand.Read(data)
	f, err := os.OpenFile(memPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, plantAt); err != nil {
		t.Fatal(err)
	}
	return data
}

// guestRAM reads guest-physical memory through QMP pmemsave.
func guestRAM(t *testing.T, inst *Instance, addr, n int) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "pmem")
	if err := inst.Execute(context.Background(), "pmemsave",
		map[string]any{"val": addr, "size": n, "filename": out}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitMigration(ctx context.Context, t *testing.T, inst *Instance) {
	t.Helper()
	for {
		var mi struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := inst.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			t.Fatal(err)
		}
		switch mi.Status {
		case "completed":
			// 7.2 reports completed before the VM leaves finish-migrate.
			for {
				st, err := inst.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st != "finish-migrate" {
					return
				}
				time.Sleep(time.Millisecond)
			}
		case "failed", "cancelled":
			t.Fatalf("migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSaveDeviceState is the branch's path: RAM lives in a shared file,
// SaveState writes the device state alone and leaves the parent paused
// with its disks in use (a second save needs no cont; the layer it wrote
// before blockdev-snapshot is readable by a child at once), and a child
// mapping a frozen copy of the file privately loads that state and runs.
func TestSaveDeviceState(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	parentCfg := testConfig(t)
	parentCfg.MemPath = filepath.Join(work, "parent.ram")
	parentCfg.Disk = filepath.Join(work, "parent.qcow2")
	makeDisk(t, parentCfg.Disk, 64)
	parent := startTest(t, parentCfg)
	planted := plantRAM(t, parentCfg.MemPath)
	if err := parent.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(work, "next.qcow2")
	if err := CreateOverlay(ctx, parentCfg.Disk, "qcow2", next, 0); err != nil {
		t.Fatal(err)
	}
	top, err := parent.AddOverlay(ctx, next, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.SwitchDisk(ctx, top, "d1"); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(work, "state")
	if err := parent.SaveState(ctx, statePath); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, parent, "paused")
	if err := parent.SaveState(ctx, filepath.Join(work, "again")); err != nil {
		t.Fatalf("a second save without cont: %v", err)
	}
	fi, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > int64(len(planted))/4 {
		t.Errorf("state is %d bytes: RAM went into it", fi.Size())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	if StateHasConfig(statePath) {
		t.Error("StateHasConfig: SaveState's file taken for a migration's")
	}
	frozen, ram := freezeRAM(t, parentCfg.MemPath, work)
	if err := parent.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, parent, "running")

	childCfg := testConfig(t)
	childCfg.Name += "c"
	childCfg.Disk = filepath.Join(work, "child.qcow2")
	if err := CreateOverlay(ctx, parentCfg.Disk, "qcow2", childCfg.Disk, 0); err != nil {
		t.Fatal(err)
	}
	childCfg.MemPath, childCfg.MemPrivate, childCfg.Incoming = frozen, true, true
	child := startTest(t, childCfg)
	if err := child.LoadState(ctx, statePath); err != nil {
		t.Fatal(err)
	}
	if err := child.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, child, "running")
	if !bytes.Equal(guestRAM(t, child, plantAt, len(planted)), planted) {
		t.Error("the child does not see the frozen RAM")
	}
	// The parent runs on and changes its RAM: the child must not see it.
	plantRAM(t, parentCfg.MemPath)
	if !bytes.Equal(guestRAM(t, child, plantAt, len(planted)), planted) {
		t.Error("the parent's later writes reached the child")
	}
	after, _ := os.ReadFile(frozen)
	if string(after) != string(ram) {
		t.Error("the frozen RAM file changed under a child that maps it privately")
	}
	child.Stop(ctx)
	parent.Stop(ctx)
}

// freezeRAM copies a stopped VM's RAM file to a read-only frozen.ram in
// dir, as a branch's clone does, and returns its path and contents.
func freezeRAM(t *testing.T, memPath, dir string) (string, []byte) {
	t.Helper()
	frozen := filepath.Join(dir, "frozen.ram")
	ram, err := os.ReadFile(memPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(frozen, ram, 0o400); err != nil {
		t.Fatal(err)
	}
	return frozen, ram
}

// TestLoadMigrationState: a state an earlier vers wrote by migrating with
// shared RAM left out begins with the configuration section; StateHasConfig
// finds it, and a child started with StateConfig loads it.
func TestLoadMigrationState(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	parentCfg := testConfig(t)
	parentCfg.MemPath, parentCfg.StateConfig = filepath.Join(work, "parent.ram"), true
	parent := startTest(t, parentCfg)
	planted := plantRAM(t, parentCfg.MemPath)
	ignoreShared := map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}
	if err := parent.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		t.Fatal(err)
	}
	if err := parent.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(work, "state")
	state, err := os.Create(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "branch"}, state, nil); err != nil {
		t.Fatal(err)
	}
	state.Close()
	if err := parent.Execute(ctx, "migrate", map[string]string{"uri": "fd:branch"}, nil); err != nil {
		t.Fatal(err)
	}
	waitMigration(ctx, t, parent)
	if !StateHasConfig(statePath) {
		t.Fatal("StateHasConfig: a migration's stream not recognised")
	}
	frozen, _ := freezeRAM(t, parentCfg.MemPath, work)
	parent.Stop(ctx)

	childCfg := testConfig(t)
	childCfg.Name += "c"
	childCfg.MemPath, childCfg.MemPrivate, childCfg.Incoming = frozen, true, true
	childCfg.StateConfig = StateHasConfig(statePath)
	child := startTest(t, childCfg)
	if err := child.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		t.Fatal(err)
	}
	if err := child.LoadState(ctx, statePath); err != nil {
		t.Fatal(err)
	}
	if err := child.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, child, "running")
	if !bytes.Equal(guestRAM(t, child, plantAt, len(planted)), planted) {
		t.Error("the child does not see the frozen RAM")
	}
	child.Stop(ctx)
}

// TestMigratePausedVM is what the branch of a paused VM relies on (QEMU
// 7.2): a plain migration of a stopped VM leaves it stopped, in
// postmigrate; such a VM refuses another migration until it has run; cont
// runs it, and once stopped again it migrates again.
func TestMigratePausedVM(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	pc := testConfig(t)
	pc.Disk = filepath.Join(work, "p.qcow2")
	makeDisk(t, pc.Disk, 64)
	p := startTest(t, pc)
	hc := testConfig(t)
	hc.Name += "h"
	hc.Disk = filepath.Join(work, "h.qcow2")
	makeDisk(t, hc.Disk, 64)
	hc.Incoming, hc.Frozen = true, true
	h := startTest(t, hc)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Pause(ctx))
	must(h.SetRAMMode(ctx, RAMFull))
	sock := filepath.Join(work, "m.sock")
	must(h.ListenRAM(ctx, "unix:"+sock))
	must(p.SetRAMMode(ctx, RAMFull))
	next := filepath.Join(work, "next.qcow2")
	must(CreateOverlay(ctx, pc.Disk, "qcow2", next, 0))
	top, err := p.AddOverlay(ctx, next, "d1")
	must(err)
	must(p.SwitchDisk(ctx, top, "d1"))
	must(p.SendRAM(ctx, "unix:"+sock))
	if _, err := p.WaitRAMSent(ctx); err != nil {
		t.Fatal(err)
	}
	must(h.WaitLoaded(ctx))
	expectStatus(t, p, "postmigrate")
	if err := p.SendRAM(ctx, "unix:"+sock); err == nil {
		p.CancelMigration(ctx)
		t.Fatal("QEMU migrated a VM in postmigrate again: the branch of a paused parent need not run it first (branch.go, unmigrate)")
	}
	// Its device state saves there, and it stays as it was.
	must(p.SaveState(ctx, filepath.Join(work, "state")))
	expectStatus(t, p, "postmigrate")
	must(p.Cont(ctx))
	expectStatus(t, p, "running")
	must(p.Pause(ctx))
	must(p.SaveState(ctx, filepath.Join(work, "state")))
	expectStatus(t, p, "paused")
	must(p.Cont(ctx))
	expectStatus(t, p, "running")
}
