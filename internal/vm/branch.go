package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"vers/api"
	"vers/internal/cgroup"
	"vers/internal/errdefs"
	"vers/internal/fault"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/rampool"
	"vers/internal/revert"
	"vers/internal/store"
)

// How a branch is made (docs/branching.md has the measurements behind it).
// The disk is the same either way: in the pause the parent's disk moves onto
// a new overlay, and its old top becomes the snapshot's immutable layer, under
// the parent's and every child's overlay. RAM is done one of two ways:
//
// Clone, where the RAM directory can clone files (internal/rampool), and the
// VM's RAM is a shared file of its own there — every VM made on such a host:
//
//  1. The parent's dirty RAM pages are written to its file while it runs.
//  2. The pause: stop; the disk switch; the RAM file is cloned into the
//     snapshot (its blocks shared, not copied: milliseconds, whatever the
//     size); the device state is saved without RAM (x-ignore-shared: it is
//     in the file); cont. Blocks are copied later, one by one, when the
//     parent or a child writes them.
//  3. Each child gets its own clone of the snapshot's RAM, loads the device
//     state and runs. A child's RAM is again a file of its own, so a child
//     is branched exactly like its parent, at any depth.
//
// Copy, everywhere else (a plain tmpfs: no file can share another's pages):
//
//  1. A "holder" QEMU is started beside the parent, identical but for its
//     RAM, a fresh shared file S, and waiting for an incoming migration.
//  2. The pause: stop; the disk switch; a background-snapshot migration into
//     the holder starts: QEMU write-protects guest RAM and resumes the guest
//     itself. RAM then streams to the holder as it was at the stop, each page
//     the guest writes being copied out first.
//  3. The holder saves the device state without RAM (S is the RAM) and goes.
//  4. Each child maps S copy-on-write (share=off), loads the device state and
//     runs: children share every page of S they have not written.

// BranchResult reports one branch.
type BranchResult struct {
	Parent     api.VM
	Children   []api.VM
	SnapshotID string
	// Pause is how long the parent's guest was stopped.
	Pause time.Duration
	// FirstReady is the time from the start of the branch until the first
	// child accepted commands; AllReady until the last did.
	FirstReady time.Duration
	AllReady   time.Duration
}

// MaxBranchCount bounds --count.
const MaxBranchCount = 64

// Branch freezes the running VM ref and starts count children from that
// instant. Aliases: "" for none; with count > 1, alias-1 … alias-N.
func (m *Manager) Branch(ctx context.Context, ref, alias string, count int) (BranchResult, error) {
	start := time.Now()
	if count < 1 || count > MaxBranchCount {
		return BranchResult{}, fmt.Errorf("count %d: make between 1 and %d children: %w", count, MaxBranchCount, errdefs.ErrInvalid)
	}
	aliases := make([]string, count)
	for i := range aliases {
		if alias != "" {
			aliases[i] = alias
			if count > 1 {
				aliases[i] = fmt.Sprintf("%s-%d", alias, i+1)
			}
		}
		if err := ValidateAlias(aliases[i]); err != nil {
			return BranchResult{}, err
		}
	}

	m.opMu.Lock()
	defer m.opMu.Unlock()
	parentRow, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return BranchResult{}, err
	}
	mc, err := m.attached(parentRow)
	if err != nil {
		return BranchResult{}, err
	}
	pcfg := mc.inst.Config()

	undo := revert.New()
	defer undo.Fail()
	bg := context.WithoutCancel(ctx)

	// Children's rows first: they reserve the aliases before anything runs.
	kids := make([]store.VM, count)
	for i := range kids {
		kids[i] = store.VM{
			ID: uuid.NewString(), Alias: aliases[i], State: api.StateCreating, ParentID: parentRow.ID,
			MemMiB: parentRow.MemMiB, VCPUs: parentRow.VCPUs, FsMiB: parentRow.FsMiB,
			Kernel: parentRow.Kernel, Rootfs: parentRow.Rootfs, CreatedAt: time.Now(),
		}
		if err := m.store.CreateVM(ctx, kids[i]); err != nil {
			return BranchResult{}, err
		}
		id := kids[i].ID
		undo.Add(func() { m.store.DeleteVM(bg, id) })
	}

	sid := uuid.NewString()
	snap := store.Snapshot{
		ID: sid, SourceVM: parentRow.ID, CreatedAt: time.Now(),
		Dir:     filepath.Join(m.layout.SnapshotsDir(), sid),
		MemPath: filepath.Join(paths.RAMDir(), "snap-"+sid+".ram"),
	}
	snap.Layer = filepath.Join(snap.Dir, "disk.qcow2")
	snap.StatePath = filepath.Join(snap.Dir, "state")
	if err := os.MkdirAll(snap.Dir, 0o700); err != nil {
		return BranchResult{}, err
	}
	if err := os.MkdirAll(paths.RAMDir(), 0o700); err != nil {
		return BranchResult{}, fmt.Errorf("RAM directory: %w", err)
	}
	// Once the parent's disk has moved onto the snapshot's layer, the snapshot
	// is the parent's too: from then on only the garbage collector, which
	// counts references, may delete it.
	frozen := false
	undo.Add(func() {
		if !frozen {
			os.RemoveAll(snap.Dir)
			os.Remove(snap.MemPath)
		}
	})

	// Everything that can be prepared while the parent runs is prepared now:
	// the holder (copy), the parent's next overlay, the children's overlays.
	clone := m.cloneRAM && pcfg.MemPath != "" && !pcfg.MemPrivate
	var holder *qemu.Instance
	if !clone {
		holder, err = m.startHolder(ctx, pcfg, snap, parentRow.FsMiB)
		if err != nil {
			return BranchResult{}, err
		}
		undo.Add(func() { holder.Stop(bg) })
	}

	// The current top layer gets a second name inside the snapshot: the same
	// inode, so it keeps every write until the switch, and afterwards the
	// parent's and children's overlays name it by its snapshot path.
	if err := os.Link(pcfg.Disk, snap.Layer); err != nil {
		return BranchResult{}, fmt.Errorf("link disk layer: %w", err)
	}
	nextDisk := filepath.Join(filepath.Dir(pcfg.Disk), "disk-"+sid[:8]+".qcow2")
	if err := qemu.CreateOverlay(ctx, snap.Layer, "qcow2", nextDisk, parentRow.FsMiB); err != nil {
		return BranchResult{}, err
	}
	undo.Add(func() {
		if !frozen {
			os.Remove(nextDisk)
		}
	})
	kidCfgs := make([]qemu.Config, count)
	for i, k := range kids {
		dir := m.layout.VMDir(k.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return BranchResult{}, err
		}
		undo.Add(func() { os.RemoveAll(dir) })
		c := pcfg
		c.Name, c.Dir = k.ID, dir
		c.Disk = filepath.Join(dir, "disk.qcow2")
		if clone {
			c.MemPath = ownRAM(k.ID)
			undo.Add(func() { os.Remove(c.MemPath) })
		} else {
			c.MemPath, c.MemPrivate = snap.MemPath, true
		}
		c.Incoming, c.Frozen = true, false
		if err := c.Validate(); err != nil {
			return BranchResult{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
		}
		if err := qemu.CreateOverlay(ctx, snap.Layer, "qcow2", c.Disk, k.FsMiB); err != nil {
			return BranchResult{}, err
		}
		kidCfgs[i] = c
	}

	// The snapshot is recorded, as used by the parent, before the freeze: a
	// daemon killed after the parent's disk moved onto the layer must find
	// the layer owned, not an unrecorded leftover to sweep away.
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateSnapshot(ctx, snap); err != nil {
			return err
		}
		return tx.AddRef(ctx, store.Ref{VMID: parentRow.ID, SnapshotID: sid, Kind: store.RefDisk})
	}); err != nil {
		return BranchResult{}, err
	}
	undo.Add(func() {
		if !frozen {
			m.store.DropSnapshot(bg, sid)
		}
	})

	if clone {
		if err := rampool.Flush(pcfg.MemPath); err != nil {
			return BranchResult{}, fmt.Errorf("flush guest RAM: %w", err)
		}
	} else if pcfg.MemPath != "" && !mc.prefaulted {
		// Punching the snapshot's zero pages unmaps them again: let it end.
		if ch, ok := m.sparsing.Load(parentRow.SnapshotID); ok {
			select {
			case <-ch.(chan struct{}):
			case <-ctx.Done():
				return BranchResult{}, ctx.Err()
			}
		}
		if err := prefault(mc.inst.PID(), pcfg.MemPath); err != nil {
			m.log.Warn("prefault guest RAM", "vm", parentRow.ID, "err", err)
		} else {
			mc.prefaulted = true
		}
	}
	tPrepared := time.Now()
	if err := fault.Check("branch.before-freeze"); err != nil {
		return BranchResult{}, err
	}
	// The freeze.
	oldDisk := pcfg.Disk
	var pause time.Duration
	var switched bool
	var ferr error
	if clone {
		pause, switched, ferr = m.freezeClone(ctx, mc.inst, pcfg.MemPath, snap, nextDisk)
	} else {
		pause, switched, ferr = m.freeze(ctx, mc.inst, holder, snap, nextDisk)
	}
	tFrozen := time.Now()
	if !switched {
		return BranchResult{}, ferr
	}
	fault.Crash("branch.crash-after-freeze")
	// From here the parent runs on nextDisk, whose backing is the snapshot's
	// layer: the snapshot stays whatever happens to the children.
	frozen = true
	pcfg.Disk = nextDisk
	mc.inst.SetConfig(pcfg)
	pjson, _ := json.Marshal(pcfg)
	parentRow.Machine = string(pjson)
	if err := m.store.UpdateVM(bg, parentRow); err != nil {
		m.log.Error("record parent disk", "id", parentRow.ID, "err", err)
		return BranchResult{}, err
	}
	// The old top's VM-directory name goes; the snapshot's name stays.
	os.Remove(oldDisk)
	undo.Add(func() { m.collect(bg) })
	if ferr != nil {
		return BranchResult{}, ferr
	}

	if err := fault.Check("branch.after-freeze"); err != nil {
		return BranchResult{}, err
	}
	if !clone {
		// The holder writes the device state and goes; its RAM is the snapshot.
		if err := holder.SetMigration(ctx, map[string]bool{"x-ignore-shared": true}, nil); err != nil {
			return BranchResult{}, err
		}
		if err := holder.SaveState(ctx, snap.StatePath); err != nil {
			return BranchResult{}, fmt.Errorf("save device state: %w", err)
		}
		// The holder is paused, holds nothing that needs flushing and never
		// writes S again: it is killed outright (a graceful quit costs QEMU a
		// second or more of CPU), off the children's path.
		go func() {
			holder.Close()
			qemu.Kill(holder.Config())
		}()
	}
	os.Chmod(snap.MemPath, 0o400)
	os.Chmod(snap.Layer, 0o400)

	tSaved := time.Now()
	res := BranchResult{SnapshotID: sid, Pause: pause}
	out, err := m.startChildren(ctx, kids, kidCfgs, snap, start)
	for _, o := range out {
		if o.mc != nil {
			mc := o.mc
			undo.Add(func() { mc.closeAgent(); mc.inst.Close(); qemu.Kill(mc.cfg) })
		}
	}
	if err != nil {
		return BranchResult{}, err
	}

	// Commit: the children are running.
	if err := m.store.Update(bg, func(tx *store.Tx) error {
		for i, k := range kids {
			cj, _ := json.Marshal(kidCfgs[i])
			k.Machine, k.State, k.PID, k.SnapshotID = string(cj), api.StateRunning, out[i].mc.inst.PID(), sid
			k.BootMillis = out[i].ready.Milliseconds()
			kids[i] = k
			if err := tx.UpdateVM(bg, k); err != nil {
				return err
			}
			if err := tx.CopyDiskRefs(bg, parentRow.ID, k.ID); err != nil {
				return err
			}
			if err := tx.AddRef(bg, store.Ref{VMID: k.ID, SnapshotID: sid, Kind: store.RefMem}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return BranchResult{}, err
	}
	m.mu.Lock()
	for i, k := range kids {
		m.live[k.ID] = out[i].mc
	}
	m.mu.Unlock()
	undo.Success()

	res.Parent = toAPI(parentRow)
	for i, k := range kids {
		res.Children = append(res.Children, toAPI(k))
		if i == 0 || out[i].ready < res.FirstReady {
			res.FirstReady = out[i].ready
		}
		if out[i].ready > res.AllReady {
			res.AllReady = out[i].ready
		}
	}
	if !clone {
		// Give back the frozen RAM's zero pages, off the critical path. (A
		// clone has none: a page never written is a hole in every file.)
		m.sparsify(sid, snap.MemPath)
	}
	m.log.Info("branched", "parent", parentRow.ID, "snapshot", sid, "children", count,
		"pause_ms", pause.Milliseconds(), "first_ready_ms", res.FirstReady.Milliseconds(), "all_ready_ms", res.AllReady.Milliseconds(),
		"prepare_ms", tPrepared.Sub(start).Milliseconds(), "freeze_ms", tFrozen.Sub(tPrepared).Milliseconds(),
		"state_ms", tSaved.Sub(tFrozen).Milliseconds(), "children_ms", time.Since(tSaved).Milliseconds())
	return res, nil
}

// startHolder starts the QEMU that receives the parent's state into the
// snapshot's RAM file. It never runs the guest (-S).
func (m *Manager) startHolder(ctx context.Context, pcfg qemu.Config, snap store.Snapshot, diskMiB int) (*qemu.Instance, error) {
	h := pcfg
	h.Name = "snap-" + snap.ID
	h.Dir = filepath.Join(snap.Dir, "h")
	h.MemPath, h.MemPrivate = snap.MemPath, false
	h.Incoming, h.Frozen = true, true
	// The same network device, with no network behind it.
	h.Network = h.Network.Unplugged()
	// The holder needs a disk of the same shape but never reads it.
	h.Disk = filepath.Join(h.Dir, "scratch.qcow2")
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := qemu.CreateBlank(ctx, h.Disk, diskMiB); err != nil {
		return nil, err
	}
	inst, err := qemu.Start(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("start snapshot holder: %w", err)
	}
	return inst, nil
}

// Migration tuning: no bandwidth cap (the default is 32 MiB/s).
var migrationParams = map[string]any{"max-bandwidth": int64(64) << 30}

// freeze takes the snapshot: it stops the parent, switches its disk onto
// nextDisk (the old top becomes the snapshot's layer), and starts a
// background-snapshot migration into the holder. QEMU saves the device
// state, write-protects the guest's RAM (userfaultfd) and resumes the guest
// at once; RAM then streams to the holder as it was at the stop, each page
// the guest writes first being copied out before the write lands. The
// parent's pause is the stop, the disk switch and the device state: it does
// not grow with RAM. freeze returns the pause once the holder has it all.
// On failure the parent runs on as before.
//
// (A live pre-copy, the usual migration, was tried first: under TCG in QEMU
// 7.2 children made from it crashed now and then with corrupted kernel
// memory — pages written during the copy were lost. Write-protection does
// not depend on dirty tracking. See docs/branching.md.)
//
// switched reports whether the parent's disk moved onto nextDisk: once it
// has, the layer is the parent's, whatever else failed.
func (m *Manager) freeze(ctx context.Context, parent, holder *qemu.Instance, snap store.Snapshot, nextDisk string) (pause time.Duration, switched bool, err error) {
	sock := filepath.Join(snap.Dir, "m.sock")
	if err := holder.SetMigration(ctx, map[string]bool{"x-ignore-shared": false}, nil); err != nil {
		return 0, false, err
	}
	if err := holder.Execute(ctx, "migrate-incoming", map[string]string{"uri": "unix:" + sock}, nil); err != nil {
		return 0, false, fmt.Errorf("holder migrate-incoming: %w", err)
	}
	if err := parent.SetMigration(ctx, map[string]bool{"x-ignore-shared": false, "background-snapshot": true}, migrationParams); err != nil {
		return 0, false, err
	}
	bg := context.WithoutCancel(ctx)
	stopped, switched, err := m.stopAndSwitch(ctx, parent, snap, nextDisk)
	if err != nil {
		return 0, switched, err
	}
	resume := func(cause error) (time.Duration, bool, error) {
		m.resume(bg, parent)
		return 0, true, cause
	}
	if err := parent.Execute(ctx, "migrate", map[string]string{"uri": "unix:" + sock}, nil); err != nil {
		return resume(fmt.Errorf("migrate: %w", err))
	}
	// QEMU resumes the guest itself once the RAM is write-protected.
	if _, err := parent.WaitStatus(ctx, 500*time.Microsecond, "running"); err != nil {
		parent.Execute(bg, "migrate_cancel", nil, nil)
		return resume(err)
	}
	pause = time.Since(stopped)
	mig, err := parent.WaitMigration(ctx, 2*time.Millisecond, func(s string) bool { return s == "completed" })
	if err != nil {
		parent.Execute(bg, "migrate_cancel", nil, nil)
		return pause, true, err
	}
	m.log.Debug("snapshot copy", "total_ms", mig.TotalTime, "setup_ms", mig.SetupTime, "normal_pages", mig.RAM.Normal,
		"zero_pages", mig.RAM.Duplicate, "transferred", mig.RAM.Transferred)
	if _, err := holder.WaitStatus(ctx, time.Millisecond, "paused", "postmigrate"); err != nil {
		return pause, true, fmt.Errorf("holder: %w", err)
	}
	return pause, true, nil
}

// freezeClone takes the snapshot of a VM whose RAM is a file that can be
// cloned: it stops the parent, switches its disk onto nextDisk, clones the
// RAM file (ram) into the snapshot, saves the device state without RAM, and
// resumes it. The pause does not grow with RAM: the clone shares blocks, and
// the dirty pages were written out before the stop (rampool.Flush), so the
// clone has only the last few to write. On failure the parent runs on as
// before; switched reports whether its disk moved (see freeze).
func (m *Manager) freezeClone(ctx context.Context, parent *qemu.Instance, ram string, snap store.Snapshot, nextDisk string) (pause time.Duration, switched bool, err error) {
	if err := parent.SetMigration(ctx, map[string]bool{"x-ignore-shared": true, "background-snapshot": false}, migrationParams); err != nil {
		return 0, false, err
	}
	stopped, switched, err := m.stopAndSwitch(ctx, parent, snap, nextDisk)
	if err != nil {
		return 0, switched, err
	}
	resume := func(cause error) (time.Duration, bool, error) {
		m.resume(context.WithoutCancel(ctx), parent)
		return 0, true, cause
	}
	if err := rampool.Clone(ram, snap.MemPath); err != nil {
		return resume(fmt.Errorf("freeze guest RAM: %w", err))
	}
	if err := parent.SaveState(ctx, snap.StatePath); err != nil {
		return resume(fmt.Errorf("save device state: %w", err))
	}
	if err := parent.Execute(ctx, "cont", nil, nil); err != nil {
		return resume(fmt.Errorf("cont: %w", err))
	}
	return time.Since(stopped), true, nil
}

// stopAndSwitch begins every freeze: it stops the parent and moves its disk
// onto nextDisk, so that the old top is the snapshot's layer. It returns
// when the stop began, and whether the disk moved; on failure the parent
// runs again.
func (m *Manager) stopAndSwitch(ctx context.Context, parent *qemu.Instance, snap store.Snapshot, nextDisk string) (stopped time.Time, switched bool, err error) {
	if err := parent.Execute(ctx, "stop", nil, nil); err != nil {
		return time.Time{}, false, fmt.Errorf("stop: %w", err)
	}
	stopped = time.Now()
	if err := fault.Check("branch.in-pause"); err != nil {
		m.resume(context.WithoutCancel(ctx), parent)
		return stopped, false, err
	}
	if err := parent.SwitchDisk(ctx, nextDisk, "d-"+snap.ID[:8]); err != nil {
		m.resume(context.WithoutCancel(ctx), parent)
		return stopped, false, fmt.Errorf("switch disk: %w", err)
	}
	fault.Crash("branch.crash-in-pause")
	return stopped, true, nil
}

// resume runs a VM stopped by a branch again, whatever step it stopped in.
func (m *Manager) resume(ctx context.Context, inst *qemu.Instance) {
	if st, _ := inst.Status(ctx); st != "running" {
		if err := inst.Execute(ctx, "cont", nil, nil); err != nil {
			m.log.Error("resume after a failed branch", "vm", inst.Config().Name, "err", err)
		}
	}
}

// startChild boots one child from the snapshot and hands it over clean:
// clock set, RNG reseeded, hostname its own.
func (m *Manager) startChild(ctx context.Context, row store.VM, cfg qemu.Config, snap store.Snapshot) (*machine, error) {
	if !cfg.MemPrivate {
		// Its own RAM, a clone of the snapshot's.
		if err := rampool.Clone(snap.MemPath, cfg.MemPath); err != nil {
			return nil, err
		}
	}
	inst, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m.placeVM(row.ID, inst.PID())
	mc := &machine{cfg: cfg, inst: inst}
	fail := func(err error) (*machine, error) {
		inst.Stop(context.WithoutCancel(ctx))
		cgroup.Remove(row.ID)
		return nil, err
	}
	if err := inst.SetMigration(ctx, map[string]bool{"x-ignore-shared": true}, nil); err != nil {
		return fail(err)
	}
	if err := inst.LoadState(ctx, snap.StatePath); err != nil {
		return fail(err)
	}
	if st, _ := inst.Status(ctx); st != "running" {
		if err := inst.Execute(ctx, "cont", nil, nil); err != nil {
			return fail(fmt.Errorf("cont: %w", err))
		}
	}
	if err := fault.Check("branch.child-start"); err != nil {
		return fail(err)
	}
	if err := m.connect(ctx, mc, row, 30*time.Second); err != nil {
		kept := m.keepConsole(cfg)
		return fail(fmt.Errorf("child agent: %w; console (whole log kept in %s):\n%s", err, kept, cfg.ConsoleTail(1500)))
	}
	return mc, nil
}

// keepConsole saves the console log of a VM that is about to be removed
// after a failure, so the reason can still be read.
func (m *Manager) keepConsole(cfg qemu.Config) string {
	dir := filepath.Join(m.layout.Home, "failed")
	os.MkdirAll(dir, 0o700)
	dst := filepath.Join(dir, cfg.Name+".console.log")
	if b, err := os.ReadFile(cfg.SerialLog()); err == nil {
		os.WriteFile(dst, b, 0o600)
	}
	return dst
}

// sparsify punches the zero pages out of a snapshot's frozen RAM in the
// background, at the lowest CPU priority: guests come first. m.sparsing
// holds a channel closed when it is done.
func (m *Manager) sparsify(sid, path string) {
	done := make(chan struct{})
	m.sparsing.Store(sid, done)
	go func() {
		defer func() { m.sparsing.Delete(sid); close(done) }()
		// The thread's priority is lowered and never restored: the runtime
		// ends a thread whose goroutine exits while locked to it.
		runtime.LockOSThread()
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		if freed, err := punchZeroPages(path); err != nil {
			m.log.Warn("sparsify snapshot RAM", "snapshot", sid, "err", err)
		} else {
			m.log.Debug("sparsified snapshot RAM", "snapshot", sid, "freed_mib", freed>>20)
		}
	}()
}

// started is one child's start: its handle, when it was ready, or why not.
type started struct {
	mc    *machine
	ready time.Duration
	err   error
}

// startChildren starts every child from snap at once. It returns each
// child's outcome (so the caller can undo the ones that started) and the
// first failure.
func (m *Manager) startChildren(ctx context.Context, kids []store.VM, cfgs []qemu.Config, snap store.Snapshot, since time.Time) ([]started, error) {
	out := make([]started, len(kids))
	var wg sync.WaitGroup
	for i := range kids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mc, err := m.startChild(ctx, kids[i], cfgs[i], snap)
			out[i] = started{mc: mc, ready: time.Since(since), err: err}
		}(i)
	}
	wg.Wait()
	for i, o := range out {
		if o.err != nil {
			return out, fmt.Errorf("child %d of %d: %w", i+1, len(kids), o.err)
		}
	}
	return out, nil
}
