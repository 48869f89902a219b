package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"vers/api"
	"vers/internal/qemu"
	"vers/internal/store"
)

// Recover brings the manager in line with what runs on the host after a
// daemon start: VMs whose QEMU still runs are re-attached, VMs whose QEMU is
// gone are marked dead, VMs caught half-created by a crash are removed with
// everything they had, and branches caught part way are finished or undone
// by the phase they recorded. Agents are dialled lazily, on first use.
func (m *Manager) Recover(ctx context.Context) error {
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	for _, row := range rows {
		switch row.State {
		case api.StateCreating:
			m.log.Warn("removing vm left half-created", "id", row.ID)
			if err := m.destroy(ctx, row); err != nil {
				m.log.Error("remove half-created vm", "id", row.ID, "err", err)
			}
		case api.StateRunning, api.StatePaused:
			m.sweepMachines(row)
			m.reattach(ctx, row)
		case api.StateSleeping:
			// A sleep or a wake interrupted: the row says it sleeps.
			m.sweepMachines(row)
			m.putToSleep(row)
		}
	}
	if err := m.recoverBranches(ctx); err != nil {
		return err
	}
	// Commits and restores under way died with the old daemon: what they
	// held goes (a commit not recorded is not one), and so do the chunks
	// a commit wrote that no commit uses — in the background, as the
	// store may be large.
	held, err := m.store.HoldersLike(ctx, holdPrefix)
	if err != nil {
		return err
	}
	if err := m.store.DropHolds(ctx, holdPrefix); err != nil {
		return err
	}
	if len(held) > 0 {
		go func() {
			if _, _, err := m.collectChunks(context.WithoutCancel(ctx)); err != nil {
				m.log.Error("remove the chunks of interrupted commits", "err", err)
			}
		}()
	}
	m.sweep(ctx)
	m.collect(ctx)
	return nil
}

// reattach finds a running or paused VM's QEMU again; a paused one stays
// (or is made again) paused.
func (m *Manager) reattach(ctx context.Context, row store.VM) {
	cfg, ok := machineOf(row)
	if !ok {
		cfg = m.qemuConfigOf(row)
	}
	inst, err := m.hv.Attach(ctx, cfg)
	if errors.Is(err, qemu.ErrNotRunning) {
		m.markDead(ctx, row, reasonLost)
		return
	}
	if err != nil {
		// Its QEMU may still run: leave the record alone so a later daemon
		// can try again, and `vers kill` can still remove it.
		m.log.Error("re-attach vm", "id", row.ID, "err", err)
		return
	}
	mc := newMachine(inst)
	switch row.State {
	case api.StatePaused:
		m.keepPaused(ctx, row, mc)
	case api.StateRunning:
		// Recorded running, found stopped: a sleep or a freeze that died
		// before it recorded anything (a user's pause is recorded first, a
		// full disk shows as io-error). It runs again.
		if st, err := inst.Status(ctx); err == nil && (st == "paused" || st == "postmigrate") {
			m.log.Warn("vm recorded running was found stopped: resuming it", "id", row.ID, "status", st)
			m.resume(ctx, inst)
		}
	}
	m.mu.Lock()
	m.live[row.ID] = mc
	m.mu.Unlock()
	m.log.Info("vm re-attached", "id", row.ID, "alias", row.Alias, "pid", inst.PID(), "state", row.State)
}

// recoverBranches follows each branch that a crash interrupted from the
// phase it recorded: before the parent's disk moved (prepared, and QEMU
// says the disk did not move) the snapshot is undone; after it, the
// parent's record is brought in line and the snapshot stays as its layer.
// The children are "creating" rows, already removed. A parent left stopped
// in the pause runs again, unless a user paused it.
func (m *Manager) recoverBranches(ctx context.Context) error {
	snaps, err := m.store.Unfinished(ctx)
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		mc := m.machine(sn.SourceVM)
		if mc == nil {
			// The parent is gone or dead: nothing runs on the snapshot's layer
			// any more, and its references decide (collect).
			m.finishBranch(ctx, sn)
			continue
		}
		cfg := mc.inst.Config()
		file, err := mc.inst.ActiveDisk(ctx)
		if err != nil {
			m.log.Error("recover branch: read the parent's disk", "snapshot", sn.ID, "err", err)
			continue
		}
		switch {
		case file == sn.NextDisk && cfg.Disk != sn.NextDisk:
			m.log.Warn("vm disk moved while the daemon was down", "id", sn.SourceVM, "disk", file)
			m.recordDisk(ctx, sn.SourceVM, mc, file)
			// The old top's VM-directory name goes; the snapshot's name stays.
			os.Remove(cfg.Disk)
			m.finishBranch(ctx, sn)
		case file == sn.NextDisk:
			m.finishBranch(ctx, sn)
		case sn.Phase == store.PhasePrepared:
			m.log.Warn("undoing a branch that never froze", "snapshot", sn.ID, "vm", sn.SourceVM)
			os.Remove(sn.NextDisk)
			m.removeSnapshot(ctx, sn)
		}
		if row, err := m.store.GetVM(ctx, sn.SourceVM); err == nil && row.State == api.StatePaused {
			continue
		}
		if st, err := mc.inst.Status(ctx); err == nil && (st == "paused" || st == "postmigrate" || st == "finish-migrate") {
			m.log.Warn("vm left stopped by an interrupted branch: resuming it", "id", sn.SourceVM, "status", st)
			m.resume(ctx, mc.inst)
		}
	}
	return nil
}

// recordDisk records that a VM's disk is now file.
func (m *Manager) recordDisk(ctx context.Context, id string, mc *machine, file string) {
	cfg := mc.inst.Config()
	cfg.Disk = file
	mc.inst.SetConfig(cfg)
	row, err := m.store.GetVM(ctx, id)
	if err != nil {
		return
	}
	row.Machine = machineJSON(cfg)
	if err := m.store.UpdateVM(ctx, row); err != nil {
		m.log.Error("record moved disk", "id", id, "err", err)
	}
}

// finishBranch marks an interrupted branch's snapshot as ended: it lives
// on as a disk layer for as long as anything refers to it.
func (m *Manager) finishBranch(ctx context.Context, sn store.Snapshot) {
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		return tx.SetSnapshotPhase(ctx, sn.ID, store.PhaseReady)
	}); err != nil {
		m.log.Error("finish interrupted branch", "snapshot", sn.ID, "err", err)
	}
}

// sweep removes what a daemon killed in the middle of an operation left on
// disk without a record: VM directories with no row (and any QEMU in them),
// and snapshots that were never recorded (their holder QEMU, their files,
// their frozen RAM).
func (m *Manager) sweep(ctx context.Context) {
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return
	}
	known := map[string]bool{}
	for _, r := range rows {
		known[r.ID] = true
	}
	if ents, err := os.ReadDir(m.cfg.Layout.VMsDir()); err == nil {
		for _, e := range ents {
			if known[e.Name()] || !e.IsDir() {
				continue
			}
			dir := filepath.Join(m.cfg.Layout.VMsDir(), e.Name())
			m.hv.Kill(qemu.Config{Name: e.Name(), Dir: dir})
			os.RemoveAll(dir)
			os.Remove(m.ownRAM(e.Name()))
			m.unplaceVM(e.Name())
			m.log.Warn("removed leftover vm directory", "id", e.Name())
		}
	}
	ents, err := os.ReadDir(m.cfg.Layout.SnapshotsDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		sid := e.Name()
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.cfg.Layout.SnapshotsDir(), sid)
		// A holder never outlives its branch.
		m.hv.Kill(qemu.Config{Name: "snap-" + sid, Dir: filepath.Join(dir, "h")})
		os.RemoveAll(filepath.Join(dir, "h"))
		if _, err := m.store.GetSnapshot(ctx, sid); err == nil {
			continue
		}
		os.RemoveAll(dir)
		os.Remove(m.snapRAM(sid))
		m.log.Warn("removed unrecorded snapshot", "id", sid)
	}
}
