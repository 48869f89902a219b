package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"vers/internal/errdefs"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "vers.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func vm(id, alias, parent string) VM {
	return VM{ID: id, Alias: alias, ParentID: parent, State: "running", MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default", CreatedAt: time.Now()}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	for _, v := range []VM{vm("abc123", "db-root", ""), vm("abd999", "", "abc123"), vm("fff000", "x_y", "")} {
		if err := s.CreateVM(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref, want string
		err       error
	}{
		{"db-root", "abc123", nil},
		{"abc123", "abc123", nil},
		{"abd", "abd999", nil},
		{"ab", "", errdefs.ErrInvalid},
		{"zzz", "", errdefs.ErrNotFound},
		{"x%", "", errdefs.ErrNotFound},
		{"x_y", "fff000", nil},
		{"", "", errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		got, err := s.ResolveVM(ctx, tt.ref)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ResolveVM(%q) err = %v, want %v", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || got.ID != tt.want {
			t.Errorf("ResolveVM(%q) = %q, %v; want %q", tt.ref, got.ID, err, tt.want)
		}
	}
}

func TestAliasUniqueAndChildren(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.CreateVM(ctx, vm("a", "same", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVM(ctx, vm("b", "same", "")); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate alias: err = %v, want ErrConflict", err)
	}
	if err := s.CreateVM(ctx, vm("c", "", "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVM(ctx, vm("d", "", "a")); err != nil {
		t.Fatal(err)
	}
	kids, err := s.Children(ctx, "a")
	if err != nil || len(kids) != 2 {
		t.Fatalf("Children = %v, %v", kids, err)
	}
	v, _ := s.GetVM(ctx, "c")
	v.State, v.PID = "dead", 42
	if err := s.UpdateVM(ctx, v); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetVM(ctx, "c"); got.State != "dead" || got.PID != 42 || got.ParentID != "a" {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.DeleteVM(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetVM(ctx, "c"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted vm: err = %v", err)
	}
	all, _ := s.ListVMs(ctx)
	if len(all) != 2 {
		t.Fatalf("ListVMs = %d rows", len(all))
	}
}

func TestSnapshotRefsAndGarbage(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	for _, v := range []VM{vm("p", "parent", ""), vm("c", "child", "p")} {
		if err := s.CreateVM(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateSnapshot(ctx, Snapshot{ID: "s1", SourceVM: "p", CreatedAt: time.Now()}); err != nil {
			return err
		}
		if err := tx.AddRef(ctx, Ref{VMID: "p", SnapshotID: "s1", Kind: RefDisk}); err != nil {
			return err
		}
		if err := tx.CopyDiskRefs(ctx, "p", "c"); err != nil {
			return err
		}
		return tx.AddRef(ctx, Ref{VMID: "c", SnapshotID: "s1", Kind: RefMem})
	})
	if err != nil {
		t.Fatal(err)
	}
	dead, memFree, err := s.Garbage(ctx)
	if err != nil || len(dead) != 0 || len(memFree) != 0 {
		t.Fatalf("in use: dead=%v memFree=%v err=%v", dead, memFree, err)
	}
	s.Update(ctx, func(tx *Tx) error { return tx.DropRefs(ctx, "c") })
	dead, memFree, _ = s.Garbage(ctx)
	if len(dead) != 0 || len(memFree) != 1 || memFree[0].ID != "s1" {
		t.Fatalf("child gone: dead=%v memFree=%v", dead, memFree)
	}
	s.Update(ctx, func(tx *Tx) error { return tx.DropRefs(ctx, "p") })
	dead, _, _ = s.Garbage(ctx)
	if len(dead) != 1 || dead[0].ID != "s1" {
		t.Fatalf("all gone: dead=%v", dead)
	}
	// A failed transaction changes nothing.
	boom := s.Update(ctx, func(tx *Tx) error {
		tx.AddRef(ctx, Ref{VMID: "x", SnapshotID: "s1", Kind: RefDisk})
		return errors.New("boom")
	})
	if boom == nil {
		t.Fatal("Update hid the error")
	}
	if dead, _, _ = s.Garbage(ctx); len(dead) != 1 {
		t.Fatal("a rolled-back ref was kept")
	}
}

func TestUniqueAliasIsConflict(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateVM(ctx, VM{ID: "1", Alias: "web", State: "running", Kernel: "k", Rootfs: "r"}); err != nil {
		t.Fatal(err)
	}
	err = s.CreateVM(ctx, VM{ID: "2", Alias: "web", State: "running", Kernel: "k", Rootfs: "r"})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("a taken alias: got %v, want a conflict", err)
	}
	// The same id twice is not an alias conflict.
	err = s.CreateVM(ctx, VM{ID: "1", State: "running", Kernel: "k", Rootfs: "r"})
	if err == nil || errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("a taken id: got %v, want a plain error", err)
	}
}

func TestSnapshotPhases(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateSnapshot(ctx, Snapshot{ID: "s1", SourceVM: "p", Phase: PhasePrepared, NextDisk: "/d/next"}); err != nil {
			return err
		}
		return tx.CreateSnapshot(ctx, Snapshot{ID: "s2", SourceVM: "p"})
	})
	if err != nil {
		t.Fatal(err)
	}
	un, err := s.Unfinished(ctx)
	if err != nil || len(un) != 1 || un[0].ID != "s1" || un[0].NextDisk != "/d/next" {
		t.Fatalf("unfinished: %+v %v", un, err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.SetSnapshotPhase(ctx, "s1", PhaseReady) }); err != nil {
		t.Fatal(err)
	}
	if un, _ := s.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("still unfinished: %+v", un)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.SetSnapshotPhase(ctx, "nope", PhaseReady) }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing snapshot: %v", err)
	}
}

// TestGarbageSkipsBranchesUnderWay: a snapshot whose children are not
// recorded yet is not garbage, whatever its references say.
func TestGarbageSkipsBranchesUnderWay(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.CreateSnapshot(ctx, Snapshot{ID: "s", SourceVM: "p", Phase: PhasePrepared}); err != nil {
			return err
		}
		return tx.AddRef(ctx, Ref{VMID: "p", SnapshotID: "s", Kind: RefDisk})
	})
	if err != nil {
		t.Fatal(err)
	}
	if dead, memFree, _ := s.Garbage(ctx); len(dead)+len(memFree) != 0 {
		t.Fatalf("a branch under way is garbage: %v %v", dead, memFree)
	}
	s.Update(ctx, func(tx *Tx) error { return tx.SetSnapshotPhase(ctx, "s", PhaseReady) })
	if _, memFree, _ := s.Garbage(ctx); len(memFree) != 1 {
		t.Fatalf("a finished branch with no children: %v", memFree)
	}
}

func TestCommitsAndTags(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	now := time.Now()
	for i, id := range []string{"aaaa1111", "aaaa2222", "bbbb3333"} {
		c := Commit{ID: id, Manifest: "{}", Kind: "commit", CreatedAt: now.Add(time.Duration(i) * time.Second), Logical: 10, MemMiB: 512, VCPUs: 1, FsMiB: 1024}
		if err := s.Update(ctx, func(tx *Tx) error { return tx.CreateCommit(ctx, c) }); err != nil {
			t.Fatal(err)
		}
	}
	dup := Commit{ID: "aaaa1111", Manifest: "{}", Kind: "commit", CreatedAt: now}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.CreateCommit(ctx, dup) }); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate commit: %v, want conflict", err)
	}
	tag := func(name, id string, move bool) error {
		return s.Update(ctx, func(tx *Tx) error { return tx.SetTag(ctx, Tag{Name: name, CommitID: id, CreatedAt: now}, move) })
	}
	if err := tag("ready", "bbbb3333", false); err != nil {
		t.Fatal(err)
	}
	if err := tag("ready", "aaaa1111", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("existing tag: %v, want conflict", err)
	}
	for ref, want := range map[string]string{"ready": "bbbb3333", "aaaa2": "aaaa2222", "bbbb3333": "bbbb3333"} {
		if c, err := s.ResolveCommit(ctx, ref); err != nil || c.ID != want {
			t.Errorf("ResolveCommit(%q) = %q, %v; want %q", ref, c.ID, err, want)
		}
	}
	if _, err := s.ResolveCommit(ctx, "aaaa"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := s.ResolveCommit(ctx, "zz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if err := tag("ready", "aaaa1111", true); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.ResolveCommit(ctx, "ready"); c.ID != "aaaa1111" {
		t.Errorf("moved tag names %q", c.ID)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteCommit(ctx, "aaaa1111") }); err != nil {
		t.Fatal(err)
	}
	if tags, _ := s.ListTags(ctx); len(tags) != 0 {
		t.Errorf("tags of a deleted commit stay: %v", tags)
	}
	if err := s.DeleteTag(ctx, "ready"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("delete missing tag: %v", err)
	}
	list, _ := s.ListCommits(ctx)
	if len(list) != 2 || list[0].ID != "bbbb3333" {
		t.Errorf("ListCommits = %v, want newest first", list)
	}
}

func TestHeads(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	for _, v := range []VM{vm("a1", "a", ""), vm("b1", "b", "")} {
		if err := s.CreateVM(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, h := range []Head{{"/p/one", "a1", now}, {"/p/two", "b1", now}, {"/p/one", "b1", now}, {"/p/three", "a1", now}} {
		if err := s.SetHead(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetHead(ctx, Head{Dir: "/p/three"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVM(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHead(ctx, Head{"/p/four", "a1", now}); err != nil {
		t.Fatal(err)
	}
	heads, err := s.ListHeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// one and two named b1, which is gone; three was cleared.
	if len(heads) != 1 || heads[0].Dir != "/p/four" || heads[0].VMID != "a1" {
		t.Fatalf("heads %+v", heads)
	}
}
