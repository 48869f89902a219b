package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vers/api"
	"vers/internal/fault"
	"vers/internal/qemu"
	"vers/internal/revert"
	"vers/internal/store"
)

// Restore in place: a VM goes back to a commit's state and keeps its id,
// alias, parent and place as HEAD. The restored state is started as a
// machine of its own beside the running one — in a directory of its own
// inside the VM's, named <id>.r<hex> — and only once it runs does the row
// switch to it, in one transaction; the old machine is stopped after.
// Until the switch a failure, or a crash, leaves the VM running as it
// was; after it, the VM is the restored one. A restarted daemon stops
// whichever machine of a VM its row does not name (sweepMachines).

// Restore puts VM ref back to commit's state in place, keeping its id and
// alias; on failure the VM runs on as it was.
func (m *Manager) Restore(ctx context.Context, ref, commit string) (api.VM, error) {
	start := time.Now()
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VM{}, err
	}
	sc, mf, err := m.loadCommit(ctx, commit)
	if err != nil {
		return api.VM{}, err
	}
	if err := m.compatible(sc, mf); err != nil {
		return api.VM{}, err
	}
	mc, err := m.workable(ctx, row)
	if err != nil {
		return api.VM{}, err
	}
	if err := mc.lock(ctx, "restore "+label(row)); err != nil {
		return api.VM{}, err
	}
	defer mc.unlock()
	r, err := m.restored(ctx, sc, mf)
	if err != nil {
		return api.VM{}, err
	}
	defer m.releaseHold(context.WithoutCancel(ctx), r.hold)
	b := &branch{m: m, snap: r.snap, pcfg: r.cfg, start: start, origin: &sc,
		ram: m.restoreFreezer(), snapUndo: revert.New(), undo: revert.New()}
	defer b.undo.Fail()
	nmc, cfg, err := b.startBeside(ctx, row)
	if err != nil {
		return api.VM{}, fmt.Errorf("restore %s (it runs on as it was): %w", label(row), err)
	}
	if err := m.switchMachine(ctx, row, mf, sc, b.snap, cfg, nmc); err != nil {
		return api.VM{}, fmt.Errorf("restore %s (it runs on as it was): %w", label(row), err)
	}
	b.undo.Success()
	old := mc.inst.Config()
	mc.closeAgent()
	mc.inst.Close()
	m.dropMachine(old, cfg)
	m.collect(context.WithoutCancel(ctx))
	m.log.Info("vm restored in place", "id", row.ID, "commit", short(sc.ID), "ms", time.Since(start).Milliseconds())
	m.publishState(ctx, row.ID, "restored from commit "+short(sc.ID))
	return m.Get(ctx, row.ID)
}

// startBeside starts the restored state as a new machine of row, in its
// own directory.
func (b *branch) startBeside(ctx context.Context, row store.VM) (*machine, qemu.Config, error) {
	m, bg := b.m, context.WithoutCancel(ctx)
	gen := make([]byte, 3)
	rand.Read(gen)
	c := b.pcfg
	c.Name = row.ID + ".r" + hex.EncodeToString(gen)
	c.Dir = filepath.Join(m.cfg.Layout.VMDir(row.ID), "r"+hex.EncodeToString(gen))
	c.Disk = filepath.Join(c.Dir, "disk.qcow2")
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, c, err
	}
	b.undo.Add(func() { os.RemoveAll(c.Dir) })
	b.ram.childRAM(b, &c, c.Name)
	if !c.MemPrivate {
		b.undo.Add(func() { os.Remove(c.MemPath) })
	}
	c.Incoming, c.Frozen = true, false
	if err := c.Validate(); err != nil {
		return nil, c, err
	}
	if err := m.hv.CreateOverlay(ctx, b.snap.Layer, "qcow2", c.Disk, row.FsMiB); err != nil {
		return nil, c, err
	}
	if err := m.inject("restore.start"); err != nil {
		return nil, c, err
	}
	mc, err := b.startChild(ctx, row, c, nil, &childPhases{})
	if err != nil {
		return nil, c, err
	}
	b.undo.Add(func() { mc.closeAgent(); mc.inst.Close(); m.hv.Kill(c) })
	_ = bg
	return mc, c, nil
}

// switchMachine makes the row name the new machine, in one transaction:
// from here the VM is the restored one.
func (m *Manager) switchMachine(ctx context.Context, row store.VM, mf manifest, sc store.Commit, sn store.Snapshot, cfg qemu.Config, nmc *machine) error {
	if err := m.inject("restore.switch"); err != nil {
		return err
	}
	row.State, row.StateReason = api.StateRunning, ""
	row.Machine, row.PID, row.SnapshotID = machineJSON(cfg), nmc.inst.PID(), sn.ID
	row.OriginCommit, row.LastCommit = sc.ID, sc.ID
	row.MemMiB, row.VCPUs, row.FsMiB = mf.MemMiB, mf.VCPUs, mf.FsMiB
	bg := context.WithoutCancel(ctx)
	if err := m.store.Update(bg, func(tx *store.Tx) error {
		if err := tx.UpdateVM(bg, row); err != nil {
			return err
		}
		if err := tx.DropRefs(bg, row.ID); err != nil {
			return err
		}
		if err := tx.CopyDiskRefs(bg, snapHolder+sn.ID, row.ID); err != nil {
			return err
		}
		for _, kind := range []string{store.RefDisk, store.RefMem} {
			if err := tx.AddRef(bg, store.Ref{VMID: row.ID, SnapshotID: sn.ID, Kind: kind}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	m.mu.Lock()
	m.live[row.ID] = nmc
	m.mu.Unlock()
	fault.Crash("restore.crash-after-switch")
	return nil
}

// dropMachine stops a VM's old machine and removes its files, sparing the
// current one's.
func (m *Manager) dropMachine(old, cur qemu.Config) {
	if old.Name != cur.Name || old.Dir != cur.Dir {
		if err := m.hv.Kill(old); err != nil {
			m.log.Error("stop a vm's old machine", "name", old.Name, "err", err)
		}
	}
	if old.Disk != cur.Disk {
		os.Remove(old.Disk)
	}
	if old.MemPath != "" && !old.MemPrivate && old.MemPath != cur.MemPath {
		os.Remove(old.MemPath)
	}
	if old.Dir != cur.Dir && strings.HasPrefix(filepath.Base(old.Dir), "r") {
		os.RemoveAll(old.Dir)
	}
	m.giveBackRAM()
}

// sweepMachines stops and removes the machines of a VM that its row does
// not name: a restore in place interrupted before the switch (the new one)
// or after it (the old one).
func (m *Manager) sweepMachines(row store.VM) {
	cfg, ok := machineOf(row)
	if !ok {
		return
	}
	dir := m.cfg.Layout.VMDir(row.ID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "r") || sub == cfg.Dir {
			continue
		}
		old := qemu.Config{Name: row.ID + "." + e.Name(), Dir: sub, Network: cfg.Network}
		m.hv.Kill(old)
		os.RemoveAll(sub)
		os.Remove(m.ownRAM(old.Name))
		m.log.Warn("removed a vm's leftover machine", "id", row.ID, "dir", sub)
	}
	if cfg.Dir != dir {
		// The VM's first machine, in its directory itself.
		m.hv.Kill(qemu.Config{Name: row.ID, Dir: dir, Network: cfg.Network})
		os.Remove(m.ownRAM(row.ID))
		if disks, _ := filepath.Glob(filepath.Join(dir, "disk*.qcow2")); len(disks) > 0 {
			for _, d := range disks {
				os.Remove(d)
			}
		}
	}
}
