package vm

import (
	"errors"
	"slices"
	"testing"

	"vers/internal/rampool"
)

// TestPageInsPrefetched: the RAM the first child of a branch mapped is
// read ahead into every later child of the same parent and of that
// child; a branch with nothing noted prefetches nothing, and the note
// goes with the VM.
func TestPageInsPrefetched(t *testing.T) {
	e := newEnv(t, true)
	db := e.create("db")
	touched := []rampool.Range{{Off: 0, Len: 8192}, {Off: 1 << 20, Len: 4096}}
	e.ram.mapped = touched

	first, err := e.m.Branch(e.ctx(), "db", "a", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.ram.mappedOf) != 1 {
		t.Fatalf("RAM mappings noted in a branch of 3: %v, want the first child's only", e.ram.mappedOf)
	}
	noted := false
	for _, k := range first.Children {
		noted = noted || e.ram.mappedOf[0] == e.m.ownRAM(k.ID)
	}
	if !noted {
		t.Errorf("noted %s, not a child's RAM file", e.ram.mappedOf[0])
	}
	// The next branch of the same parent finds the note.
	second, err := e.m.Branch(e.ctx(), "db", "b", 1)
	if err != nil {
		t.Fatal(err)
	}
	kid := second.Children[0]
	if got := e.ram.prefetchedFor(e.m.ownRAM(kid.ID)); !slices.Equal(got, touched) {
		t.Errorf("second branch's child prefetched %v, want %v", got, touched)
	}
	// A grandchild: its parent inherited the note.
	e.ram.mapped = nil
	grand, err := e.m.Branch(e.ctx(), kid.Alias, "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ram.prefetchedFor(e.m.ownRAM(grand.Children[0].ID)); !slices.Equal(got, touched) {
		t.Errorf("grandchild prefetched %v, want the inherited %v", got, touched)
	}
	if _, err := e.m.Kill(e.ctx(), "db", true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{db.ID, kid.ID, grand.Children[0].ID} {
		if r := e.m.pageIns.get(id); r != nil {
			t.Errorf("VM %s killed, its page-ins still noted: %v", id, r)
		}
	}
}

// TestPageInsFailing: neither noting nor prefetching can fail a branch.
func TestPageInsFailing(t *testing.T) {
	for _, op := range []string{"Mapped", "Prefetch"} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t, true)
			db := e.create("db")
			e.ram.mapped = []rampool.Range{{Off: 0, Len: 4096}}
			e.ram.fails[op] = errors.New("injected")
			for _, alias := range []string{"a", "b"} {
				if _, err := e.m.Branch(e.ctx(), "db", alias, 1); err != nil {
					t.Fatalf("branch %s with %s failing: %v", alias, op, err)
				}
			}
			if op == "Mapped" && e.m.pageIns.get(db.ID) != nil {
				t.Error("a failed Mapped noted page-ins")
			}
		})
	}
}

// TestPageInsCopy: children of a copied RAM map it in memory: nothing is
// noted or prefetched.
func TestPageInsCopy(t *testing.T) {
	e := newEnv(t, false)
	e.create("db")
	e.ram.mapped = []rampool.Range{{Off: 0, Len: 4096}}
	for _, alias := range []string{"a", "b"} {
		if _, err := e.m.Branch(e.ctx(), "db", alias, 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.ram.mappedOf) != 0 || len(e.ram.prefetched) != 0 {
		t.Errorf("copy method noted %v, prefetched %v", e.ram.mappedOf, e.ram.prefetched)
	}
}
