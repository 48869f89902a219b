package vm

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"vers/internal/errdefs"
	"vers/internal/qemu"
	"vers/internal/store"
)

// killLockWait bounds how long a kill waits for an operation on the VM to
// let go, after the VM's process was ended (which makes that operation
// fail at once).
const killLockWait = 30 * time.Second

// KillError is a kill that removed some VMs of a tree before it failed:
// Deleted lists them, so that a caller can forget them (HEAD included).
type KillError struct {
	Deleted []string
	Err     error
}

func (e *KillError) Error() string { return e.Err.Error() }
func (e *KillError) Unwrap() error { return e.Err }

// Kill stops the VM ref and deletes everything it owns. A VM with children
// is refused unless recursive, in which case the whole subtree goes, deepest
// first. It returns the ids removed; after a partial failure the error is
// a *KillError that lists them.
func (m *Manager) Kill(ctx context.Context, ref string, recursive bool) ([]string, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	order, err := m.subtree(ctx, row)
	if err != nil {
		return nil, err
	}
	if len(order) > 1 && !recursive {
		var names []string
		for _, c := range order[:len(order)-1] {
			names = append(names, label(c))
		}
		return nil, fmt.Errorf("vm %s has %d descendant(s) (%s); use -r to kill them too: %w",
			label(row), len(names), strings.Join(names, ", "), errdefs.ErrConflict)
	}
	var done []string
	for _, v := range order {
		if err := m.kill(ctx, v); err != nil {
			if len(done) > 0 {
				return done, &KillError{Deleted: done, Err: err}
			}
			return nil, err
		}
		done = append(done, v.ID)
	}
	return done, nil
}

// subtree returns root and all its descendants, deepest first (root last).
func (m *Manager) subtree(ctx context.Context, root store.VM) ([]store.VM, error) {
	var out []store.VM
	var walk func(v store.VM, depth int) error
	walk = func(v store.VM, depth int) error {
		if depth > 1000 {
			return fmt.Errorf("vm tree deeper than 1000 at %s", v.ID)
		}
		kids, err := m.store.Children(ctx, v.ID)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := walk(k, depth+1); err != nil {
				return err
			}
		}
		out = append(out, v)
		return nil
	}
	return out, walk(root, 0)
}

// kill ends one VM whatever it is doing: its process goes first, without
// asking it (a VM that stopped answering can always be killed, and an
// operation in flight on it then fails at once), then, holding the VM,
// everything it owned.
func (m *Manager) kill(ctx context.Context, v store.VM) error {
	if err := m.hv.Kill(m.qemuConfigOf(v)); err != nil {
		return fmt.Errorf("kill qemu of %s: %w", label(v), err)
	}
	if mc := m.machine(v.ID); mc != nil {
		lctx, cancel := context.WithTimeout(ctx, killLockWait)
		err := mc.lock(lctx, "kill "+label(v))
		cancel()
		if err != nil {
			return err
		}
		defer mc.unlock()
	}
	return m.destroy(ctx, v)
}

// qemuConfigOf is what identifies a VM's process: its name and directory,
// as its row records them (a VM restored in place runs in a directory of
// its own inside the VM's), or those a VM starts with.
func (m *Manager) qemuConfigOf(v store.VM) qemu.Config {
	if cfg, ok := machineOf(v); ok && cfg.Name != "" && cfg.Dir != "" {
		return qemu.Config{Name: cfg.Name, Dir: cfg.Dir, Network: cfg.Network}
	}
	return qemu.Config{Name: v.ID, Dir: m.cfg.Layout.VMDir(v.ID)}
}

// destroy stops one VM and removes its files and row. It is idempotent, so a
// kill interrupted half way can simply be repeated.
func (m *Manager) destroy(ctx context.Context, v store.VM) error {
	m.forget(v.ID)
	// Everything the VM owns is deleted next, so there is nothing for a
	// graceful quit to flush: it is killed outright, which is immediate where
	// QEMU's own quit takes a second or more.
	if err := m.hv.Kill(m.qemuConfigOf(v)); err != nil {
		return fmt.Errorf("kill qemu of %s: %w", label(v), err)
	}
	m.unplaceVM(v.ID)
	if err := m.inject("kill.files"); err != nil {
		return err
	}
	if err := os.RemoveAll(m.cfg.Layout.VMDir(v.ID)); err != nil {
		return fmt.Errorf("remove files of %s: %w", label(v), err)
	}
	// Its own RAM, named after it whether or not its row says so yet (a
	// child's row gets its machine only once it runs); a snapshot's frozen
	// RAM is collected below.
	os.Remove(m.ownRAM(v.ID))
	if cfg, ok := machineOf(v); ok && cfg.MemPath != "" && !cfg.MemPrivate {
		os.Remove(cfg.MemPath)
	}
	defer m.giveBackRAM()
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.DropRefs(ctx, v.ID); err != nil {
			return err
		}
		return tx.DeleteVM(ctx, v.ID)
	}); err != nil {
		return err
	}
	m.collect(ctx)
	m.forgetSleep(ctx, v)
	m.pauses.Delete(v.ID)
	m.pageIns.drop(v.ID)
	m.log.Info("vm killed", "id", v.ID, "alias", v.Alias)
	m.publishKilled(v)
	return nil
}

// giveBackRAM has the RAM filesystem return deleted files' blocks to the
// host now rather than at its next log checkpoint (see rampool.Returner).
func (m *Manager) giveBackRAM() {
	if m.cfg.Returner != nil {
		m.cfg.Returner.Kick()
	}
}

// collect deletes what no VM uses any more: whole snapshots nothing refers
// to, and the RAM of snapshots whose children are all gone. A snapshot
// removed lets go of what it held (a restored snapshot's lower layers), so
// it goes round until nothing more is freed.
func (m *Manager) collect(ctx context.Context) {
	for range 16 {
		dead, memFree, err := m.store.Garbage(ctx)
		if err != nil {
			m.log.Error("snapshot garbage", "err", err)
			return
		}
		for _, sn := range memFree {
			os.Remove(sn.MemPath)
			os.Remove(sn.StatePath)
		}
		for _, sn := range dead {
			m.removeSnapshot(ctx, sn)
		}
		if len(dead) == 0 {
			return
		}
	}
}

// removeSnapshot deletes a snapshot's files, then its record.
func (m *Manager) removeSnapshot(ctx context.Context, sn store.Snapshot) {
	os.Remove(sn.MemPath)
	if err := os.RemoveAll(sn.Dir); err != nil {
		m.log.Error("remove snapshot", "id", sn.ID, "err", err)
		return
	}
	if err := m.store.DropRefs(ctx, snapHolder+sn.ID); err != nil {
		m.log.Error("release what a snapshot held", "id", sn.ID, "err", err)
		return
	}
	if err := m.store.DropSnapshot(ctx, sn.ID); err != nil {
		m.log.Error("forget snapshot", "id", sn.ID, "err", err)
		return
	}
	m.log.Info("snapshot freed", "id", sn.ID)
}
