package vm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/fault"
	"vers/internal/qemu"
	"vers/internal/store"
)

// probeTimeout bounds one health check of a VM; a QEMU that does not
// answer within it is reported as not answering.
const probeTimeout = 3 * time.Second

// resumeFreeMiB is the free space under the VMs' disks from which a VM
// that the host's full disk paused is run again.
const resumeFreeMiB = 256

// Watch keeps the daemon's picture of the VMs true until ctx ends: a VM
// whose QEMU exited on its own (guest power-off, crash, kill -9) is dead; a
// VM that QEMU paused because the host's disk filled up says so, and runs
// again once there is space; a VM whose QEMU stopped answering says so.
func (m *Manager) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.checkAll(ctx)
	}
}

// checkAll checks every live VM once, all at once: one that does not
// answer must not delay the others.
func (m *Manager) checkAll(ctx context.Context) {
	m.mu.Lock()
	ids := make(map[string]*machine, len(m.live))
	for id, mc := range m.live {
		ids[id] = mc
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for id, mc := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.check(ctx, id, mc)
		}()
	}
	wg.Wait()
}

func (m *Manager) check(ctx context.Context, id string, mc *machine) {
	if mc.inst.Exited() {
		row, err := m.store.GetVM(ctx, id)
		if err != nil || row.State == api.StateDead {
			return
		}
		if mc.inst.ShutdownReason() == "guest-reset" && mc.rebootAllowed(time.Now()) {
			if err := m.reboot(ctx, row, mc); err == nil {
				return
			} else {
				m.log.Error("reboot vm", "id", id, "err", err)
			}
		}
		m.markDead(ctx, row, reasonExited)
		return
	}
	// A console log the guest fills, or a network log it makes passt
	// write, stays bounded.
	if err := m.hv.RotateLogs(mc.inst.Config()); err != nil {
		m.log.Warn("vm logs", "vm", id, "err", err)
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	st, err := mc.inst.Status(pctx)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil && !mc.inst.Exited():
		if mc.setHealth(healthUnresponsive) {
			m.log.Warn("vm is not answering", "id", id, "err", err)
			m.publishState(ctx, id, reasonUnresponsive)
		}
	case err != nil:
	case st == "io-error":
		if mc.setHealth(healthDiskFull) {
			m.log.Warn("vm paused: host disk full", "id", id, "free_mib", m.cfg.Host.FreeDiskMiB())
			m.publishState(ctx, id, reasonDiskFull)
		}
		m.resumeAfterDiskFull(ctx, id, mc)
	default:
		if mc.setHealth(healthOK) {
			m.log.Info("vm answers again", "id", id, "status", st)
			m.publishState(ctx, id, "answers again")
		}
	}
}

// resumeAfterDiskFull runs a VM that a full host disk paused once there is
// room again; if the disk fills again, QEMU pauses it again.
func (m *Manager) resumeAfterDiskFull(ctx context.Context, id string, mc *machine) {
	if free := m.cfg.Host.FreeDiskMiB(); free < resumeFreeMiB {
		return
	}
	if !mc.tryLock() {
		return
	}
	defer mc.unlock()
	// A VM a user paused stays paused: only Resume runs it.
	if row, err := m.store.GetVM(ctx, id); err != nil || row.State == api.StatePaused {
		return
	}
	if err := mc.inst.Cont(ctx); err != nil {
		m.log.Warn("resume vm after disk full", "id", id, "err", err)
		return
	}
	mc.setHealth(healthOK)
	m.log.Info("vm resumed: host disk has room again", "id", id)
	m.publishState(ctx, id, "host disk has room again")
}

// usable returns the handle on a running VM that can take a command now,
// or says at once why it cannot: dead, paused by a user or by the host's
// full disk, not answering.
func (m *Manager) usable(ctx context.Context, row store.VM) (*machine, error) {
	mc, err := m.attached(row)
	if err != nil {
		return nil, err
	}
	if row.State == api.StatePaused {
		return nil, errPaused(row)
	}
	if err := m.probe(ctx, row, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// workable is usable for the operations on a whole VM — branch, commit,
// sleep, restore — which a user's pause does not prevent.
func (m *Manager) workable(ctx context.Context, row store.VM) (*machine, error) {
	mc, err := m.attached(row)
	if err != nil {
		return nil, err
	}
	if err := m.probe(ctx, row, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// probe asks QEMU whether the VM can be worked on now: not when it does not
// answer, nor when a full host disk paused it.
func (m *Manager) probe(ctx context.Context, row store.VM, mc *machine) error {
	st, err := m.status(ctx, mc)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		mc.setHealth(healthUnresponsive)
		return m.qemuErr(row, err)
	case st == "io-error":
		mc.setHealth(healthDiskFull)
		return fmt.Errorf("vm %s is paused: %s: %w", label(row), reasonDiskFull, errdefs.ErrConflict)
	}
	return nil
}

// qemuErr classifies an error from a VM's QEMU: one that is not answering
// is reported as such, with what to do.
func (m *Manager) qemuErr(row store.VM, err error) error {
	if errors.Is(err, qemu.ErrUnresponsive) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("vm %s is not answering (its QEMU may be stopped or hung); `vers kill %s` removes it: %v: %w",
			label(row), label(row), err, errdefs.ErrUnavailable)
	}
	return err
}

// inject is where tests make a named step fail (internal/fault, or a
// test's own injector).
func (m *Manager) inject(point string) error {
	if m.failpoint != nil {
		return m.failpoint(point)
	}
	return fault.Check(point)
}
