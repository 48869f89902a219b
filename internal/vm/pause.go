package vm

import (
	"context"
	"fmt"
	"time"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/store"
)

// A user's pause stops a VM's vCPUs and keeps its memory, its process and
// everything it owns. It is a state of the VM's row (paused), not of the
// daemon: a restarted daemon re-attaches the VM paused, the watch never runs
// it again (not even when a full host disk has room again), and only Resume
// does. A paused VM can be branched (it stays paused; its children run),
// killed and resumed; commands in it are refused, saying how to resume it.
//
// The row and QEMU agree under the VM's operation lock. A pause records the
// row first and then stops the guest; a resume runs the guest first and
// then records the row: a daemon killed in between leaves the row paused,
// and the daemon that re-attaches it stops it (reattach), so a VM a user
// paused never runs by accident.

// Deadlines of a pause or a resume: the wait for an operation on the VM (a
// branch) to end, and the call into QEMU.
const (
	pauseLockWait = 30 * time.Second
	pauseCallWait = 15 * time.Second
)

// Pause stops the VM ref's guest until Resume. Pausing a paused VM does
// nothing and is not an error.
func (m *Manager) Pause(ctx context.Context, ref string) (api.VM, error) {
	row, mc, err := m.lockVM(ctx, ref, "pause")
	if err != nil {
		return api.VM{}, err
	}
	defer mc.unlock()
	if row.State == api.StatePaused {
		return m.toAPI(row), nil
	}
	bg := context.WithoutCancel(ctx)
	row.State = api.StatePaused
	if err := m.store.UpdateVM(bg, row); err != nil {
		return api.VM{}, err
	}
	if err := within(bg, pauseCallWait, mc.inst.Pause); err != nil {
		row.State = api.StateRunning
		if uerr := m.store.UpdateVM(bg, row); uerr != nil {
			m.log.Error("record vm running after a failed pause", "id", row.ID, "err", uerr)
		}
		return api.VM{}, fmt.Errorf("pause vm %s: %w", label(row), m.qemuErr(row, err))
	}
	m.log.Info("vm paused", "id", row.ID, "alias", row.Alias)
	m.publishVM(api.EventVMState, row, api.ReasonPaused)
	return m.toAPI(row), nil
}

// Resume runs the VM ref's guest again, whatever stopped it: a pause, or a
// full host disk (QEMU stops it again if the disk is still full). Resuming
// a running VM does nothing and is not an error.
func (m *Manager) Resume(ctx context.Context, ref string) (api.VM, error) {
	row, mc, err := m.lockVM(ctx, ref, "resume")
	if err != nil {
		return api.VM{}, err
	}
	defer mc.unlock()
	bg := context.WithoutCancel(ctx)
	st, err := m.status(bg, mc)
	if err != nil {
		return api.VM{}, fmt.Errorf("resume vm %s: %w", label(row), m.qemuErr(row, err))
	}
	changed := st != "running" || row.State == api.StatePaused
	if st != "running" {
		if err := within(bg, pauseCallWait, mc.inst.Cont); err != nil {
			return api.VM{}, fmt.Errorf("resume vm %s: %w", label(row), m.qemuErr(row, err))
		}
	}
	mc.setHealth(healthOK)
	if row.State == api.StatePaused {
		row.State = api.StateRunning
		if err := m.store.UpdateVM(bg, row); err != nil {
			// The row still says paused: so must the guest.
			within(bg, pauseCallWait, mc.inst.Pause)
			return api.VM{}, err
		}
	}
	m.log.Info("vm resumed", "id", row.ID, "alias", row.Alias, "was", st)
	if st != "running" {
		m.trimClockLater(row.ID)
	}
	if changed {
		m.publishVM(api.EventVMState, row, "resumed")
	}
	return m.toAPI(row), nil
}

// lockVM resolves ref to a VM this daemon holds, running or paused, and
// takes its operation lock. The row is read again under the lock: what
// another operation changed meanwhile counts.
func (m *Manager) lockVM(ctx context.Context, ref, what string) (store.VM, *machine, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return row, nil, err
	}
	mc, err := m.attached(row)
	if err != nil {
		return row, nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, pauseLockWait)
	err = mc.lock(lctx, what+" "+label(row))
	cancel()
	if err != nil {
		return row, nil, err
	}
	if row, err = m.store.GetVM(ctx, row.ID); err == nil {
		_, err = m.attached(row)
	}
	if err != nil {
		mc.unlock()
		return row, nil, err
	}
	return row, mc, nil
}

// status is QEMU's run state of mc, within probeTimeout.
func (m *Manager) status(ctx context.Context, mc *machine) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return mc.inst.Status(ctx)
}

// errPaused is what a command in a paused VM fails with.
func errPaused(row store.VM) error {
	return fmt.Errorf("vm %s is paused; `vers resume %s` runs it again: %w", label(row), label(row), errdefs.ErrConflict)
}

// keepPaused stops the guest of a VM recorded paused that runs (a daemon
// killed in the middle of a pause or a resume), once it is re-attached.
func (m *Manager) keepPaused(ctx context.Context, row store.VM, mc *machine) {
	st, err := m.status(ctx, mc)
	if err != nil || st != "running" {
		return
	}
	m.log.Warn("vm recorded paused was running: pausing it again", "id", row.ID)
	if err := within(ctx, pauseCallWait, mc.inst.Pause); err != nil {
		m.log.Error("pause re-attached vm", "id", row.ID, "err", err)
	}
}
