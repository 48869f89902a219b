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

// TestMigrateSharedMemory is the fast branch path: RAM lives in a shared
// file, the migration stream leaves it out (x-ignore-shared), and the child
// maps a frozen copy of the file privately.
func TestMigrateSharedMemory(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	parentCfg := testConfig(t)
	parentCfg.MemPath = filepath.Join(work, "parent.ram")
	parent := startTest(t, parentCfg)
	planted := plantRAM(t, parentCfg.MemPath)
	ignoreShared := map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}
	if err := parent.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		t.Fatal(err)
	}
	if err := parent.Execute(ctx, "stop", nil, nil); err != nil {
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
	frozen := filepath.Join(work, "frozen.ram")
	ram, err := os.ReadFile(parentCfg.MemPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(frozen, ram, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := parent.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(statePath); fi.Size() > int64(len(planted))/4 {
		t.Errorf("state is %d bytes: RAM went into the stream despite x-ignore-shared", fi.Size())
	}

	childCfg := testConfig(t)
	childCfg.Name += "c"
	childCfg.MemPath, childCfg.MemPrivate, childCfg.Incoming = frozen, true, true
	child := startTest(t, childCfg)
	if err := child.Execute(ctx, "migrate-set-capabilities", ignoreShared, nil); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(statePath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := child.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "in"}, in, nil); err != nil {
		t.Fatal(err)
	}
	if err := child.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:in"}, nil); err != nil {
		t.Fatal(err)
	}
	for st := "inmigrate"; st == "inmigrate"; time.Sleep(5 * time.Millisecond) {
		if st, err = child.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if st != "inmigrate" && st != "paused" {
			t.Fatalf("child status %q, want paused", st)
		}
	}
	if err := child.Execute(ctx, "cont", nil, nil); err != nil {
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
	must(p.SetRAMMode(ctx, RAMShared))
	if err := p.SaveState(ctx, filepath.Join(work, "state")); err == nil {
		t.Fatal("QEMU migrated a VM in postmigrate again: the branch of a paused parent need not run it first (branch.go, unmigrate)")
	}
	must(p.Cont(ctx))
	expectStatus(t, p, "running")
	must(p.Pause(ctx))
	must(p.SaveState(ctx, filepath.Join(work, "state")))
	expectStatus(t, p, "postmigrate")
	must(p.Cont(ctx))
	expectStatus(t, p, "running")
}
