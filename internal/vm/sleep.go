package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/fault"
	"vers/internal/qemu"
	"vers/internal/revert"
	"vers/internal/store"
)

// Sleep and wake. A VM goes to sleep by being committed while it stays
// paused (a commit of kind "sleep"), then its QEMU is stopped and its RAM
// given back; its row stays, state "sleeping", with the commit as its last.
// It wakes as a VM started from that commit, but in its own row: same id,
// alias, parent and place as HEAD. The row's state is the one truth: a
// daemon killed at any point finds the VM asleep (its commit durable, any
// QEMU of it stopped) or awake, never both or neither.

// Sleep writes VM ref's state to a commit and stops its QEMU.
func (m *Manager) Sleep(ctx context.Context, ref string) (api.VM, error) {
	start := time.Now()
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VM{}, err
	}
	mc, err := m.workable(ctx, row)
	if err != nil {
		return api.VM{}, err
	}
	if err := mc.lock(ctx, "sleep "+label(row)); err != nil {
		return api.VM{}, err
	}
	defer mc.unlock()
	bg := context.WithoutCancel(ctx)
	// Paused first, so that the freeze leaves it paused: nothing the guest
	// does after the commit is lost, since it does nothing.
	wasRunning := false
	if st, err := mc.inst.Status(ctx); err == nil && st == "running" {
		if err := mc.inst.Pause(ctx); err != nil {
			return api.VM{}, m.qemuErr(row, err)
		}
		wasRunning = true
	}
	b, err := m.branchLocked(ctx, start, row, mc, nil, holdPrefix+"sleep-"+row.ID, true)
	if err == nil {
		_, err = m.persistHeld(ctx, b, api.CommitKindSleep, CommitOptions{Message: "sleep of " + label(row)})
	}
	if err != nil {
		if wasRunning {
			m.resume(bg, mc.inst)
		}
		return api.VM{}, fmt.Errorf("sleep %s: %w", label(row), err)
	}
	return m.fallAsleep(bg, row.ID, mc)
}

// fallAsleep records that a VM whose state is committed sleeps, then stops
// its QEMU and frees its RAM.
func (m *Manager) fallAsleep(ctx context.Context, id string, mc *machine) (api.VM, error) {
	row, err := m.store.GetVM(ctx, id)
	if err != nil {
		return api.VM{}, err
	}
	cfg := mc.inst.Config()
	row.State, row.PID, row.Machine = api.StateSleeping, 0, machineJSON(cfg)
	if err := m.store.UpdateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	fault.Crash("sleep.crash-after-record")
	m.forget(row.ID)
	m.putToSleep(row)
	m.log.Info("vm sleeps", "id", row.ID, "alias", row.Alias, "commit", short(row.LastCommit))
	m.publishVM(api.EventVMState, row, "asleep in commit "+short(row.LastCommit))
	return m.toAPI(row), nil
}

// putToSleep makes sure a sleeping VM has no QEMU and no RAM.
func (m *Manager) putToSleep(row store.VM) {
	cfg, ok := machineOf(row)
	if !ok {
		cfg = m.qemuConfigOf(row)
	}
	if err := m.hv.Kill(cfg); err != nil {
		m.log.Error("stop a sleeping vm's qemu", "id", row.ID, "err", err)
	}
	m.unplaceVM(row.ID)
	os.Remove(m.ownRAM(row.ID))
	m.giveBackRAM()
}

// Wake brings a sleeping VM back from its commit, same id and alias.
func (m *Manager) Wake(ctx context.Context, ref string) (api.VM, error) {
	start := time.Now()
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VM{}, err
	}
	if row.State != api.StateSleeping {
		return api.VM{}, fmt.Errorf("vm %s is %s, not sleeping: %w", label(row), row.State, errdefs.ErrConflict)
	}
	if _, busy := m.waking.LoadOrStore(row.ID, true); busy {
		return api.VM{}, fmt.Errorf("vm %s is being woken already: %w", label(row), errdefs.ErrConflict)
	}
	defer m.waking.Delete(row.ID)
	sc, mf, err := m.loadCommit(ctx, row.LastCommit)
	if err != nil {
		return api.VM{}, fmt.Errorf("wake %s: %w", label(row), err)
	}
	if err := m.compatible(sc, mf); err != nil {
		return api.VM{}, err
	}
	if err := m.admitLocked(ctx, admission{fresh: row.MemMiB}); err != nil {
		return api.VM{}, err
	}
	r, err := m.restored(ctx, sc, mf)
	if err != nil {
		return api.VM{}, fmt.Errorf("wake %s: %w", label(row), err)
	}
	defer m.releaseHold(context.WithoutCancel(ctx), r.hold)
	b := &branch{m: m, snap: r.snap, pcfg: r.cfg, start: start, origin: &sc, kids: []store.VM{row},
		ram: m.restoreFreezer(), snapUndo: revert.New(), undo: revert.New()}
	defer b.undo.Fail()
	if err := b.startWoken(ctx); err != nil {
		return api.VM{}, fmt.Errorf("wake %s (it sleeps on): %w", label(row), err)
	}
	b.undo.Success()
	return m.woken(ctx, row, b.kids[0], sc)
}

// startWoken starts a sleeping VM in its own row. A disk left by a wake
// that a crash interrupted goes first (a sleeping VM's own disk always has
// another name: the freeze moved it).
func (b *branch) startWoken(ctx context.Context) error {
	row := b.kids[0]
	left := filepath.Join(b.m.cfg.Layout.VMDir(row.ID), "disk.qcow2")
	if cfg, ok := machineOf(row); !ok || cfg.Disk != left {
		os.Remove(left)
	}
	c, err := b.childConfig(ctx, row)
	if err != nil {
		return err
	}
	b.kidCfgs = []qemu.Config{c}
	if err := b.startChildren(ctx); err != nil {
		return err
	}
	fault.Crash("wake.crash-before-record")
	return b.record(ctx)
}

// woken tidies up after a wake: the disk the VM slept on goes, and its
// sleep commit too unless someone tagged it — its record only: the next
// sleep finds most of its chunks stored already (the images, the RAM that
// did not change), so it writes only what changed.
func (m *Manager) woken(ctx context.Context, old, row store.VM, sc store.Commit) (api.VM, error) {
	if cfg, ok := machineOf(old); ok {
		if nc, ok := machineOf(row); ok && cfg.Disk != nc.Disk {
			m.dropMachine(cfg, nc)
		}
	}
	if c, err := m.commitAPI(ctx, sc); err == nil && sc.Kind == api.CommitKindSleep && len(c.Tags) == 0 {
		row.LastCommit = sc.Parent
		if err := m.store.UpdateVM(ctx, row); err == nil {
			if err := m.forgetCommits(ctx, []string{sc.ID}); err != nil {
				m.log.Warn("remove sleep commit", "commit", short(sc.ID), "err", err)
			}
		}
	}
	m.log.Info("vm woken", "id", row.ID, "alias", row.Alias)
	m.publishState(ctx, row.ID, "woken")
	return m.Get(ctx, row.ID)
}

// forgetSleep forgets the sleep commit of a sleeping VM that was killed,
// unless someone tagged it: it was the VM's state, not a commit of anyone's.
func (m *Manager) forgetSleep(ctx context.Context, v store.VM) {
	if v.State != api.StateSleeping || v.LastCommit == "" {
		return
	}
	sc, err := m.store.GetCommit(ctx, v.LastCommit)
	if err != nil || sc.Kind != api.CommitKindSleep {
		return
	}
	if c, err := m.commitAPI(ctx, sc); err == nil && len(c.Tags) == 0 {
		if err := m.forgetCommits(ctx, []string{sc.ID}); err != nil {
			m.log.Warn("forget a killed vm's sleep commit", "commit", short(sc.ID), "err", err)
		}
	}
}
