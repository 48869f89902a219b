package vm

import (
	"context"
	"fmt"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/store"
)

// Admission: a VM is let in only if the host can hold it next to what runs
// already, counted before anything starts.
//
// A new VM may come to touch all of its RAM, so it is charged its whole
// size: the VMs made with `vers run` together must fit in the host's RAM
// (less hostReserveMiB for the host itself). A branch's children start
// sharing every page with their snapshot and pay only for the pages they
// write (see docs/branching.md), so charging each its whole size would
// refuse the fan-outs branching is for; instead a branch needs
// childReserveMiB per child of memory the host has available now.

const (
	hostReserveMiB  = 1024
	childReserveMiB = 64
)

// admission is what a request needs: fresh MiB charged in full, and a
// number of branch children.
type admission struct {
	fresh    int
	children int
}

// reserve checks that the host has room for a and, in the same step,
// writes rows (in state creating), which hold the room from then on.
func (m *Manager) reserve(ctx context.Context, a admission, rows []store.VM) error {
	m.admitMu.Lock()
	defer m.admitMu.Unlock()
	if err := m.admit(ctx, a); err != nil {
		return err
	}
	return m.store.Update(ctx, func(tx *store.Tx) error {
		for _, r := range rows {
			if err := tx.CreateVM(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// admitLocked checks that the host has room for a, in the critical section
// of reserve, for a VM whose row exists already (one that wakes).
func (m *Manager) admitLocked(ctx context.Context, a admission) error {
	m.admitMu.Lock()
	defer m.admitMu.Unlock()
	return m.admit(ctx, a)
}

func (m *Manager) admit(ctx context.Context, a admission) error {
	total := m.cfg.Host.MemMiB
	if total <= 0 {
		return nil // unknown host size: nothing to count against
	}
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	charged, creating := 0, 0
	for _, r := range rows {
		if r.State == api.StateDead || r.State == api.StateSleeping {
			continue
		}
		if r.ParentID == "" {
			charged += r.MemMiB
		}
		if r.State == api.StateCreating && r.ParentID != "" {
			creating++
		}
	}
	if a.fresh > 0 {
		room := total - hostReserveMiB - charged
		if a.fresh > room {
			return fmt.Errorf("not enough memory for %d MiB: this host has %d MiB, the VMs made with `vers run` hold %d MiB and %d MiB stay for the host, so %d MiB are free; use a smaller mem_size_mib or kill a VM: %w",
				a.fresh, total, charged, hostReserveMiB, max(room, 0), errdefs.ErrConflict)
		}
	}
	if a.children > 0 && m.cfg.Host.Available != nil {
		avail := m.cfg.Host.Available() - (creating * childReserveMiB)
		need := a.children * childReserveMiB
		if need > avail {
			return fmt.Errorf("not enough memory for %d children: they need about %d MiB to start (%d MiB each, until they write), and the host has %d MiB available; branch fewer or kill a VM: %w",
				a.children, need, childReserveMiB, max(avail, 0), errdefs.ErrConflict)
		}
	}
	return nil
}
