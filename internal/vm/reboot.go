package vm

import (
	"context"
	"fmt"
	"os"
	"time"

	"vers/api"
	"vers/internal/store"
)

// A guest that reboots ends its QEMU (-no-reboot: a reset must not loop a
// guest that panics at boot), which says so ("guest-reset"). Such a VM is
// booted again from its disk, keeping its id, alias and place in the tree;
// one that resets more than rebootBudget times within rebootWindow is
// taken for a guest that panics as it comes up, and is left dead.
const (
	rebootBudget = 3
	rebootWindow = time.Minute
)

// rebootAllowed records a reset at now and says whether the budget allows a
// reboot.
func (mc *machine) rebootAllowed(now time.Time) bool {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	kept := mc.resets[:0]
	for _, t := range mc.resets {
		if now.Sub(t) < rebootWindow {
			kept = append(kept, t)
		}
	}
	mc.resets = append(kept, now)
	return len(mc.resets) <= rebootBudget
}

// reboot boots a VM whose guest reset again, from its disk as it is: a cold
// boot of the same machine, with fresh RAM.
func (m *Manager) reboot(ctx context.Context, row store.VM, old *machine) error {
	if !old.tryLock() {
		return fmt.Errorf("vm %s is busy", label(row))
	}
	defer old.unlock()
	cfg := old.inst.Config()
	old.closeAgent()
	old.inst.Close()
	// A child's machine waited for an incoming state; a reboot boots.
	cfg.Incoming, cfg.Frozen = false, false
	if cfg.MemPath != "" && !cfg.MemPrivate {
		// Its own RAM file: start from zeros (a snapshot that shares its
		// blocks keeps its own).
		if err := os.Truncate(cfg.MemPath, 0); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := m.hv.Kill(cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
	defer cancel()
	inst, err := m.hv.Start(ctx, cfg)
	if err != nil {
		return err
	}
	m.ownVM(cfg)
	m.placeVM(row.ID, inst.PID())
	mc := newMachine(inst)
	mc.resets = old.resets
	if err := m.connect(ctx, mc, row, m.cfg.BootTimeout, false); err != nil {
		inst.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("vm did not come up after its reboot: %w", err)
	}
	row.PID, row.State, row.Machine = inst.PID(), api.StateRunning, machineJSON(cfg)
	if err := m.store.UpdateVM(ctx, row); err != nil {
		mc.closeAgent()
		inst.Stop(context.WithoutCancel(ctx))
		return err
	}
	m.mu.Lock()
	m.live[row.ID] = mc
	m.mu.Unlock()
	m.log.Info("vm rebooted", "id", row.ID, "alias", row.Alias, "pid", row.PID)
	m.publishVM(api.EventVMState, row, "rebooted by its guest")
	return nil
}
