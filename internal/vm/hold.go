package vm

import (
	"context"

	"vers/internal/store"
)

// Holds: references that are not a VM's. An operation that uses a
// snapshot after the VM that made it may be gone (a commit writing the
// snapshot into the chunk store while the VM runs on; a restore starting
// VMs from a snapshot it made) holds it under a name of its own, so the
// collector leaves it alone. A snapshot restored from a commit holds the
// snapshots whose layers its disk chain passes through, for as long as it
// lives. A restarted daemon drops the holds of operations that died with
// the old one (holdPrefix), and collects.
const (
	holdPrefix = "hold:"
	snapHolder = "snap:"
)

// holdSnapshot gives holder, in tx, the RAM of snapshot sid and every disk
// layer of vm's chain.
func holdSnapshot(ctx context.Context, tx *store.Tx, vm, holder, sid string) error {
	if err := tx.CopyDiskRefs(ctx, vm, holder); err != nil {
		return err
	}
	return tx.AddRef(ctx, store.Ref{VMID: holder, SnapshotID: sid, Kind: store.RefMem})
}

// releaseHold lets go of what holder holds, and collects what nothing
// else needs.
func (m *Manager) releaseHold(ctx context.Context, holder string) {
	if err := m.store.DropRefs(ctx, holder); err != nil {
		m.log.Error("release hold", "holder", holder, "err", err)
	}
	m.collect(ctx)
}
