package vm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"vers/api"
	"vers/internal/cgroup"
	"vers/internal/paths"
	"vers/internal/qemu"
)

// Recover brings the manager in line with what runs on the host after a
// daemon start: VMs whose QEMU still runs are re-attached, VMs whose QEMU is
// gone are marked dead, and VMs caught half-created by a crash are removed
// with everything they had. Agents are dialled lazily, on first use.
func (m *Manager) Recover(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	for _, row := range rows {
		cfg, ok := machineOf(row)
		if !ok {
			cfg = qemu.Config{Name: row.ID, Dir: m.layout.VMDir(row.ID)}
		}
		switch row.State {
		case api.StateCreating:
			m.log.Warn("removing vm left half-created", "id", row.ID)
			if err := m.destroy(ctx, row); err != nil {
				m.log.Error("remove half-created vm", "id", row.ID, "err", err)
			}
		case api.StateRunning, api.StatePaused:
			inst, err := qemu.Attach(ctx, cfg)
			if errors.Is(err, qemu.ErrNotRunning) {
				m.markDead(ctx, row)
				continue
			}
			if err != nil {
				// Its QEMU may still run: leave the record alone so a later
				// daemon can try again, and `vers kill` can still remove it.
				m.log.Error("re-attach vm", "id", row.ID, "err", err)
				continue
			}
			// A daemon killed during a branch may not have recorded that the
			// disk moved to a new overlay: QEMU knows.
			if file, err := inst.ActiveDisk(ctx); err == nil && file != "" && file != cfg.Disk && cfg.Disk != "" {
				m.log.Warn("vm disk moved while the daemon was down", "id", row.ID, "disk", file)
				cfg.Disk = file
				inst.SetConfig(cfg)
				if b, err := json.Marshal(cfg); err == nil {
					row.Machine = string(b)
					m.store.UpdateVM(ctx, row)
				}
			}
			// A daemon killed in a branch's pause leaves the parent stopped.
			if st, err := inst.Status(ctx); err == nil && row.State == api.StateRunning && (st == "paused" || st == "postmigrate" || st == "finish-migrate") {
				m.log.Warn("vm left stopped by an interrupted branch: resuming it", "id", row.ID, "status", st)
				m.resume(ctx, inst)
			}
			m.mu.Lock()
			m.live[row.ID] = &machine{cfg: cfg, inst: inst}
			m.mu.Unlock()
			m.log.Info("vm re-attached", "id", row.ID, "alias", row.Alias, "pid", inst.PID())
		}
	}
	m.sweep(ctx)
	m.collect(ctx)
	return nil
}

// Watch marks VMs dead when their QEMU exits on its own (guest power-off,
// crash, kill -9). It returns when ctx ends.
func (m *Manager) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var gone []string
		var running []qemu.Config
		for id, mc := range m.live {
			if !qemu.Alive(mc.inst.PID()) {
				gone = append(gone, id)
			}
			running = append(running, mc.cfg)
		}
		m.mu.Unlock()
		for _, cfg := range running { // a console log the guest fills stays bounded
			if _, err := qemu.RotateConsole(cfg, qemu.ConsoleCap); err != nil {
				m.log.Warn("console log", "vm", cfg.Name, "err", err)
			}
		}
		for _, id := range gone {
			if row, err := m.store.GetVM(ctx, id); err == nil && row.State != api.StateDead {
				m.markDead(ctx, row)
			}
		}
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
	if ents, err := os.ReadDir(m.layout.VMsDir()); err == nil {
		for _, e := range ents {
			if known[e.Name()] || !e.IsDir() {
				continue
			}
			dir := filepath.Join(m.layout.VMsDir(), e.Name())
			qemu.Kill(qemu.Config{Name: e.Name(), Dir: dir})
			os.RemoveAll(dir)
			os.Remove(ownRAM(e.Name()))
			cgroup.Remove(e.Name())
			m.log.Warn("removed leftover vm directory", "id", e.Name())
		}
	}
	ents, err := os.ReadDir(m.layout.SnapshotsDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		sid := e.Name()
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.layout.SnapshotsDir(), sid)
		// A holder never outlives its branch.
		qemu.Kill(qemu.Config{Name: "snap-" + sid, Dir: filepath.Join(dir, "h")})
		os.RemoveAll(filepath.Join(dir, "h"))
		if _, err := m.store.GetSnapshot(ctx, sid); err == nil {
			continue
		}
		os.RemoveAll(dir)
		os.Remove(filepath.Join(paths.RAMDir(), "snap-"+sid+".ram"))
		m.log.Warn("removed unrecorded snapshot", "id", sid)
	}
}
