package vm

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestRAMFilesRecordTheirHome: every RAM file a VM, a branch or a snapshot
// makes carries its home (rampool.SweepOrphans finds a deleted home's by
// it); a file system that cannot record it fails nothing.
func TestRAMFilesRecordTheirHome(t *testing.T) {
	for _, clone := range []bool{true, false} {
		t.Run(method(clone), func(t *testing.T) {
			e := newEnv(t, clone)
			p := e.create("root")
			res, err := e.m.Branch(e.ctx(), "root", "kid", 2)
			if err != nil {
				t.Fatal(err)
			}
			sn := e.snapshots()
			files := []string{e.m.snapRAM(sn[0].ID)}
			if clone {
				files = append(files, e.m.ownRAM(p.ID), e.m.ownRAM(res.Children[0].ID), e.m.ownRAM(res.Children[1].ID))
			}
			for _, f := range files {
				if got := e.ram.owner(f); got != e.home {
					t.Errorf("%s records home %q, want %q", filepath.Base(f), got, e.home)
				}
			}

			e.ram.mu.Lock()
			e.ram.fails["Own"] = errors.New("operation not supported")
			e.ram.mu.Unlock()
			if _, err := e.m.Branch(e.ctx(), "root", "more", 1); err != nil {
				t.Fatalf("a branch where RAM files cannot record their home: %v", err)
			}
			e.create("other") // fails the test if it fails
		})
	}
}

func TestVMOfRAMFile(t *testing.T) {
	id := "0d6c3f9e-4b1a-4f7e-9a53-2c8e0f1b7d21"
	for _, c := range []struct {
		path, id string
		ok       bool
	}{
		{"/dev/shm/vers/" + id + ".ram", id, true},
		{"/dev/shm/vers/" + id + ".r5f3a.ram", id, true},
		{"/dev/shm/vers/snap-" + id + ".ram", "", false},
		{"/dev/shm/vers/" + id, "", false},
		{"/dev/shm/vers/.ram", "", false},
	} {
		if got, ok := VMOfRAMFile(c.path); got != c.id || ok != c.ok {
			t.Errorf("VMOfRAMFile(%s) = %q, %v; want %q, %v", filepath.Base(c.path), got, ok, c.id, c.ok)
		}
	}
	// The names the manager gives are the ones it reads back.
	e := newEnv(t, true)
	if got, ok := VMOfRAMFile(e.m.ownRAM(id)); !ok || got != id {
		t.Errorf("own RAM file: %q, %v", got, ok)
	}
	if _, ok := VMOfRAMFile(e.m.snapRAM(id)); ok {
		t.Error("a snapshot's RAM file named as a VM's")
	}
}
