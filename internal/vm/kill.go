package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"vers/internal/cgroup"
	"vers/internal/errdefs"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/store"
)

// Kill stops the VM ref and deletes everything it owns. A VM with children
// is refused unless recursive, in which case the whole subtree goes, deepest
// first. It returns the ids removed.
func (m *Manager) Kill(ctx context.Context, ref string, recursive bool) ([]string, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
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
		if err := m.destroy(ctx, v); err != nil {
			return done, err
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

// destroy stops one VM and removes its files and row. It is idempotent, so a
// kill interrupted half way can simply be repeated.
func (m *Manager) destroy(ctx context.Context, v store.VM) error {
	m.mu.Lock()
	mc := m.live[v.ID]
	delete(m.live, v.ID)
	m.mu.Unlock()
	if mc != nil {
		mc.closeAgent()
		mc.inst.Close()
	}
	// Everything the VM owns is deleted next, so there is nothing for a
	// graceful quit to flush: it is killed outright, which is immediate where
	// QEMU's own quit takes a second or more.
	if err := qemu.Kill(qemu.Config{Name: v.ID, Dir: m.layout.VMDir(v.ID)}); err != nil {
		return fmt.Errorf("kill qemu of %s: %w", label(v), err)
	}
	cgroup.Remove(v.ID)
	if err := os.RemoveAll(m.layout.VMDir(v.ID)); err != nil {
		return fmt.Errorf("remove files of %s: %w", label(v), err)
	}
	// Its own RAM, named after it whether or not its row says so yet (a
	// child's row gets its machine only once it runs); a snapshot's frozen
	// RAM is collected below.
	os.Remove(ownRAM(v.ID))
	if cfg, ok := machineOf(v); ok && cfg.MemPath != "" && !cfg.MemPrivate {
		os.Remove(cfg.MemPath)
	}
	defer m.giveBackRAM()
	if err := m.store.DropRefs(ctx, v.ID); err != nil {
		return err
	}
	if err := m.store.DeleteVM(ctx, v.ID); err != nil {
		return err
	}
	m.collect(ctx)
	m.log.Info("vm killed", "id", v.ID, "alias", v.Alias)
	return nil
}

// giveBackRAM has the RAM filesystem return deleted files' blocks to the
// host now rather than at its next log checkpoint (see rampool.Returner).
func (m *Manager) giveBackRAM() {
	if m.returner != nil {
		m.returner.Kick()
	}
}

// ownRAM is the file a VM's RAM lives in when it has a file of its own.
func ownRAM(id string) string { return filepath.Join(paths.RAMDir(), id+".ram") }

// machineOf decodes the QEMU configuration stored with a VM.
func machineOf(v store.VM) (qemu.Config, bool) {
	var cfg qemu.Config
	if v.Machine == "" || json.Unmarshal([]byte(v.Machine), &cfg) != nil {
		return qemu.Config{Name: v.ID}, false
	}
	return cfg, true
}

// collect deletes what no VM uses any more: whole snapshots nothing refers
// to, and the RAM of snapshots whose children are all gone.
func (m *Manager) collect(ctx context.Context) {
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
		os.Remove(sn.MemPath)
		if err := os.RemoveAll(sn.Dir); err != nil {
			m.log.Error("remove snapshot", "id", sn.ID, "err", err)
			continue
		}
		if err := m.store.DeleteSnapshot(ctx, sn.ID); err != nil {
			m.log.Error("forget snapshot", "id", sn.ID, "err", err)
			continue
		}
		m.log.Info("snapshot freed", "id", sn.ID)
	}
}
