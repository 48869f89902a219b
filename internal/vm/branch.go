package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/fault"
	"vers/internal/qemu"
	"vers/internal/revert"
	"vers/internal/store"
)

// A branch freezes a running or paused VM — the parent — into an immutable
// snapshot and starts children from it (docs/branching.md has the
// measurements behind each choice). It runs in phases, each a method of
// branch below with its own undo:
//
//	reserve        the children's rows (names, memory) and the snapshot's directory
//	prepare        everything that can be done while the parent runs: disk
//	               overlays, the RAM method's preparation; the snapshot is
//	               recorded (phase "prepared")
//	freeze         the pause: stop, switch the disk, freeze RAM, cont; from
//	               the switch on the snapshot is the parent's disk layer
//	               (phase "frozen"), whatever fails next
//	startChildren  every child from the snapshot, at once
//	record         the children run (phase "ready")
//
// The disk is the same either way: in the pause the parent's disk moves onto
// a new overlay, and its old top becomes the snapshot's immutable layer,
// under the parent's and every child's overlay. RAM is frozen by one of two
// methods (ramFreezer, freeze.go): clone its file, or copy it into a holder.
//
// A parent a user paused stays paused: the freeze stops nothing and resumes
// nothing (the copy method then copies RAM by a plain migration, since
// QEMU's background snapshot resumes the guest), whatever fails. Its
// children run: they are new VMs.

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
const MaxBranchCount = 128

// Deadlines of the phases, whatever the caller's context allows: every
// wait on QEMU or the guest ends.
const (
	prepareTimeout = 2 * time.Minute
	freezeTimeout  = time.Minute
	// childTimeout bounds a child's whole start; childAgentTimeout the wait
	// for its agent within it.
	childTimeout      = 90 * time.Second
	childAgentTimeout = 30 * time.Second
)

// branch is one branch in progress: what its phases share.
type branch struct {
	m      *Manager
	parent store.VM
	mc     *machine
	pcfg   qemu.Config
	ram    ramFreezer
	// paused: a user paused the parent, and it stays so; otherwise it runs
	// again after the freeze, whatever fails.
	paused bool

	snap     store.Snapshot
	nextDisk string
	// topNode is the parent's disk node, diskNode the one nextDisk is
	// opened as in the prepare, for the switch in the pause.
	topNode, diskNode string
	kids              []store.VM
	kidCfgs           []qemu.Config
	early             []*earlyStart
	out               []started
	pause             time.Duration
	steps             pauseSteps
	// When each phase ended, for the log.
	start, prepared, frozen, saved time.Time

	// snapUndo undoes the snapshot, until the parent's disk moves onto it;
	// undo undoes everything else (the children, the holder) on any failure.
	snapUndo, undo *revert.Reverter
	// hold, when set, names who holds the snapshot once the branch ends
	// (see branchLocked).
	hold string
	// origin, for VMs started from a commit, is that commit: there is no
	// parent, and the snapshot was brought out of the chunk store.
	origin *store.Commit
	// pageInsOnce: the first child up notes its page-ins; prefetches are
	// the notes and the children's RAM prefetches under way (pagein.go).
	pageInsOnce sync.Once
	prefetches  sync.WaitGroup
}

// diskFrom is whose disk references the children take: the parent's, or
// for VMs started from a commit those their snapshot holds (its lower
// layers).
func (b *branch) diskFrom() string {
	if b.origin != nil {
		return snapHolder + b.snap.ID
	}
	return b.parent.ID
}

// Branch freezes the running or paused VM ref and starts count children
// from that instant. Aliases: "" for none; with count > 1, alias-1 … alias-N.
func (m *Manager) Branch(ctx context.Context, ref, alias string, count int) (BranchResult, error) {
	start := time.Now()
	aliases, err := childAliases(alias, count)
	if err != nil {
		return BranchResult{}, err
	}
	parent, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return BranchResult{}, err
	}
	mc, err := m.workable(ctx, parent)
	if err != nil {
		return BranchResult{}, err
	}
	if err := mc.lock(ctx, "branch "+label(parent)); err != nil {
		return BranchResult{}, err
	}
	defer mc.unlock()
	b, err := m.branchLocked(ctx, start, parent, mc, aliases, "", false)
	if err != nil {
		return BranchResult{}, err
	}
	if !b.paused {
		m.notePause(parent.ID, "branch", b.pause)
	}
	res := b.result()
	m.noteBranch(res)
	m.publishBranch(res)
	return res, nil
}

// branchLocked runs a branch's phases on a parent whose operation lock the
// caller holds. A parent a user paused stays paused, and so does one with
// keepPaused. With no aliases it only freezes the parent into a snapshot
// (a commit). With hold, the snapshot's RAM and the parent's disk chain are
// held under that name, from the same transaction that ends the branch,
// until the caller lets go of them (releaseHold).
func (m *Manager) branchLocked(ctx context.Context, start time.Time, parent store.VM, mc *machine, aliases []string, hold string, keepPaused bool) (*branch, error) {
	// Read again under the lock: a pause or a resume meanwhile counts.
	parent, err := m.store.GetVM(ctx, parent.ID)
	if err != nil {
		return nil, err
	}
	b := &branch{m: m, parent: parent, mc: mc, pcfg: mc.inst.Config(), start: start, hold: hold,
		paused: keepPaused || parent.State == api.StatePaused, snapUndo: revert.New(), undo: revert.New()}
	b.ram = m.freezerFor(b.pcfg)
	defer b.snapUndo.Fail()
	defer b.undo.Fail()
	if err := b.reserve(ctx, aliases); err != nil {
		return nil, err
	}
	if err := within(ctx, prepareTimeout, b.prepare); err != nil {
		return nil, err
	}
	if err := within(ctx, freezeTimeout, b.freeze); err != nil {
		return nil, err
	}
	if c := mc.currentAgent(); c != nil && !b.paused {
		m.trimClockWith(parent.ID, c) // its clock stood still in the pause
	}
	if err := b.startChildren(ctx); err != nil {
		return nil, err
	}
	if err := b.record(ctx); err != nil {
		return nil, err
	}
	b.undo.Success()
	b.ram.done(b)
	b.inheritPageIns()
	return b, nil
}

// childAliases names count children after alias, checking each name.
func childAliases(alias string, count int) ([]string, error) {
	if count < 1 || count > MaxBranchCount {
		return nil, fmt.Errorf("count %d: make between 1 and %d children: %w", count, MaxBranchCount, errdefs.ErrInvalid)
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
			return nil, err
		}
	}
	return aliases, nil
}

// reserve writes the children's rows, which hold their names and memory
// before anything runs, and makes the snapshot's directory.
func (b *branch) reserve(ctx context.Context, aliases []string) error {
	m, bg := b.m, context.WithoutCancel(ctx)
	b.kids = make([]store.VM, len(aliases))
	for i := range b.kids {
		b.kids[i] = store.VM{
			ID: uuid.NewString(), Alias: aliases[i], State: api.StateCreating, ParentID: b.parent.ID,
			MemMiB: b.parent.MemMiB, VCPUs: b.parent.VCPUs, FsMiB: b.parent.FsMiB,
			Kernel: b.parent.Kernel, Rootfs: b.parent.Rootfs, CreatedAt: time.Now(),
		}
	}
	if err := m.reserve(ctx, admission{children: len(aliases)}, b.kids); err != nil {
		return err
	}
	for _, k := range b.kids {
		b.undo.Add(func() { m.store.DeleteVM(bg, k.ID); m.publishKilled(k) })
	}
	sid := uuid.NewString()
	b.snap = store.Snapshot{
		ID: sid, SourceVM: b.parent.ID, CreatedAt: time.Now(),
		Dir: filepath.Join(m.cfg.Layout.SnapshotsDir(), sid), MemPath: m.snapRAM(sid),
		Phase: store.PhasePrepared,
	}
	b.snap.Layer = filepath.Join(b.snap.Dir, "disk.qcow2")
	b.snap.StatePath = filepath.Join(b.snap.Dir, "state")
	b.nextDisk = filepath.Join(filepath.Dir(b.pcfg.Disk), "disk-"+sid[:8]+".qcow2")
	b.snap.NextDisk = b.nextDisk
	if err := os.MkdirAll(b.snap.Dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(m.cfg.RAMDir, 0o700); err != nil {
		return fmt.Errorf("RAM directory: %w", err)
	}
	b.snapUndo.Add(func() { os.RemoveAll(b.snap.Dir); os.Remove(b.snap.MemPath) })
	return m.inject("branch.reserve")
}

// journalMarkTimeout bounds the parent's journal mark before a freeze.
const journalMarkTimeout = 2 * time.Second

// markJournal begins a segment of the running parent's change journal just
// before the freeze, so that the segment the children share with it, and
// whose paths a diff between them must look at, holds only what changed
// in the moment before the branch (internal/agent/journal.go). Best
// effort: without it a diff looks at more paths, never at fewer.
func (b *branch) markJournal(ctx context.Context) {
	c := b.mc.currentAgent()
	if c == nil || b.paused {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, journalMarkTimeout)
	defer cancel()
	epoch := b.parent.ID + ".b" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := c.Sync(ctx, agent.SyncRequest{Epoch: epoch}); err != nil {
		b.m.log.Info("journal mark before the branch", "vm", b.parent.ID, "err", err)
	}
}

// prepare does, while the parent runs, everything the pause and the
// children need: the RAM method's preparation, the parent's next overlay,
// the children's overlays; then it records the snapshot.
func (b *branch) prepare(ctx context.Context) error {
	m, bg := b.m, context.WithoutCancel(ctx)
	if err := b.ram.prepare(ctx, b); err != nil {
		return err
	}
	// The current top layer gets a second name inside the snapshot: the
	// same inode, so it keeps every write until the switch, and afterwards
	// the parent's and children's overlays name it by its snapshot path.
	if err := os.Link(b.pcfg.Disk, b.snap.Layer); err != nil {
		return fmt.Errorf("link disk layer: %w", err)
	}
	if err := m.hv.CreateOverlay(ctx, b.snap.Layer, "qcow2", b.nextDisk, b.parent.FsMiB); err != nil {
		return err
	}
	b.snapUndo.Add(func() { os.Remove(b.nextDisk) })
	// Opened now, used in the pause.
	b.diskNode = "d-" + b.snap.ID[:8]
	top, err := b.mc.inst.AddOverlay(ctx, b.nextDisk, b.diskNode)
	if err != nil {
		return fmt.Errorf("open the next disk layer: %w", b.m.qemuErr(b.parent, err))
	}
	b.topNode = top
	b.snapUndo.Add(func() { b.mc.inst.DropOverlay(bg, b.diskNode) })
	b.kidCfgs = make([]qemu.Config, len(b.kids))
	for i, k := range b.kids {
		c, err := b.childConfig(ctx, k)
		if err != nil {
			return err
		}
		b.kidCfgs[i] = c
	}
	b.startEarly(ctx)
	// Recorded, as used by the parent, before the freeze: a daemon killed
	// after the parent's disk moved onto the layer must find the layer
	// owned, not an unrecorded leftover to sweep away.
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateSnapshot(ctx, b.snap); err != nil {
			return err
		}
		return tx.AddRef(ctx, store.Ref{VMID: b.parent.ID, SnapshotID: b.snap.ID, Kind: store.RefDisk})
	}); err != nil {
		return err
	}
	b.snapUndo.Add(func() { m.store.DropSnapshot(bg, b.snap.ID) })
	// The mark is a round trip into the guest, which writes RAM: it goes
	// before the RAM method's last step, so that the pages it dirties are
	// flushed while the parent runs, not in the pause.
	b.markJournal(ctx)
	if err := b.ram.beforeFreeze(ctx, b); err != nil {
		return err
	}
	b.prepared = time.Now()
	return m.inject("branch.before-freeze")
}

// childConfig makes one child's directory and disk overlay, and its machine:
// the parent's, with its own name, disk and RAM, waiting for its state.
func (b *branch) childConfig(ctx context.Context, k store.VM) (qemu.Config, error) {
	dir := b.m.cfg.Layout.VMDir(k.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return qemu.Config{}, err
	}
	b.undo.Add(func() { os.RemoveAll(dir) })
	c := b.pcfg
	c.Name, c.Dir = k.ID, dir
	c.Disk = filepath.Join(dir, "disk.qcow2")
	b.ram.childRAM(b, &c, k.ID)
	if !c.MemPrivate {
		b.undo.Add(func() { os.Remove(c.MemPath) })
	}
	c.Incoming, c.Frozen = true, false
	// A branch's state is yet to be saved, without the section; a restored
	// commit's or a sleeping VM's is there, saved by this vers or an
	// earlier one.
	c.StateConfig = qemu.StateHasConfig(b.snap.StatePath)
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	if err := b.m.hv.CreateOverlay(ctx, b.snap.Layer, "qcow2", c.Disk, k.FsMiB); err != nil {
		return c, err
	}
	return c, nil
}

// earlyStart is a child's QEMU started in the prepare, before its snapshot
// exists: its network, process and QMP connection come up while the parent
// flushes and pauses, instead of after (80–110 ms of a child's start here).
// It maps an empty RAM file and waits for an incoming state; the child's
// start then clones the snapshot's RAM over that file and loads the device
// state. Its disk chain is opened while the parent still writes the layer
// it ends on: QEMU keeps the images of a VM waiting for an incoming state
// inactive (no lock taken, nothing cached for use) and opens them again,
// reading their metadata afresh, when the state has loaded, by which time
// the layer is the snapshot's and immutable. done is closed when inst or
// err is set.
type earlyStart struct {
	done   chan struct{}
	cancel context.CancelFunc
	inst   Instance
	err    error
}

// startEarly starts the QEMU of each child that will start first (as many
// as start at once), where the RAM method allows it. A start that fails is
// the child's failure, found when it starts; on any failure of the branch
// every early QEMU is stopped.
func (b *branch) startEarly(ctx context.Context) {
	if !b.ram.startsEarly() {
		return
	}
	m, bg := b.m, context.WithoutCancel(ctx)
	b.early = make([]*earlyStart, min(len(b.kids), b.childStarts()))
	for i := range b.early {
		cfg, id := b.kidCfgs[i], b.kids[i].ID
		// Its own deadline, from now: the prepare's ends with the prepare.
		ectx, cancel := context.WithTimeout(bg, childTimeout)
		e := &earlyStart{done: make(chan struct{}), cancel: cancel}
		b.early[i] = e
		go func() {
			defer close(e.done)
			defer cancel()
			e.inst, e.err = b.startProcess(ectx, id, cfg)
		}()
		b.undo.Add(func() {
			e.cancel()
			<-e.done
			if e.inst != nil {
				e.inst.Stop(bg)
				m.unplaceVM(id)
			}
		})
	}
}

// earlyFor is child i's early start, or nil.
func (b *branch) earlyFor(i int) *earlyStart {
	if i < len(b.early) {
		return b.early[i]
	}
	return nil
}

// freeze is the pause. Once the parent's disk has moved onto the snapshot's
// layer, the snapshot is the parent's too: from then on only the garbage
// collector, which counts references, may delete it.
func (b *branch) freeze(ctx context.Context) error {
	stopped, err := b.stopAndSwitch(ctx)
	if err != nil {
		return err
	}
	pause, ferr := b.ram.freeze(ctx, b, stopped)
	b.pause, b.frozen = pause, time.Now()
	if b.paused {
		b.pause = 0 // the branch stopped nothing
	}
	fault.Crash("branch.crash-after-freeze")
	if err := b.switched(ctx); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	b.m.own(b.snap.MemPath)
	if err := b.m.inject("branch.after-freeze"); err != nil {
		return err
	}
	if err := b.ram.finish(ctx, b); err != nil {
		return err
	}
	os.Chmod(b.snap.MemPath, 0o400)
	os.Chmod(b.snap.Layer, 0o400)
	b.saved = time.Now()
	return nil
}

// stopAndSwitch begins every freeze: it stops the parent and moves its disk
// onto the next overlay, so that the old top is the snapshot's layer. It
// returns when the stop began; on failure the parent runs again (unless a
// user paused it).
func (b *branch) stopAndSwitch(ctx context.Context) (time.Time, error) {
	inst, bg := b.mc.inst, context.WithoutCancel(ctx)
	if err := b.unmigrate(ctx); err != nil {
		return time.Time{}, err
	}
	asked := time.Now()
	if err := inst.Pause(ctx); err != nil {
		return time.Time{}, b.m.qemuErr(b.parent, err)
	}
	stopped := time.Now()
	b.steps.stop = stopped.Sub(asked)
	if err := b.m.inject("branch.in-pause"); err != nil {
		b.restore(bg)
		return stopped, err
	}
	if err := inst.SwitchDisk(ctx, b.topNode, b.diskNode); err != nil {
		b.restore(bg)
		return stopped, fmt.Errorf("switch disk: %w", b.m.qemuErr(b.parent, err))
	}
	b.steps.disk = time.Since(stopped)
	fault.Crash("branch.crash-in-pause")
	return stopped, nil
}

// unmigrate readies a paused parent that an earlier branch migrated. QEMU
// 7.2 leaves a VM whose state was saved stopped in "postmigrate", and
// refuses to migrate it again until its guest has run: so such a parent
// runs for the moment between this cont and the pause that follows. (A
// paused VM branched once, or resumed in between, does not run at all.)
func (b *branch) unmigrate(ctx context.Context) error {
	if !b.paused {
		return nil
	}
	if st, err := b.mc.inst.Status(ctx); err != nil || st != "postmigrate" {
		return nil // a QEMU that does not answer fails the pause next
	}
	if err := b.mc.inst.Cont(ctx); err != nil {
		return fmt.Errorf("ready the paused parent: %w", b.m.qemuErr(b.parent, err))
	}
	return nil
}

// restore runs the parent again after a failure in the pause, unless a user
// paused it: then it stays paused.
func (b *branch) restore(ctx context.Context) {
	if !b.paused {
		b.m.resume(ctx, b.mc.inst)
	}
}

// switched records that the parent runs on its next overlay, whose backing
// is the snapshot's layer: the snapshot stays whatever happens to the
// children, and only the children are undone after a failure.
func (b *branch) switched(ctx context.Context) error {
	m, bg := b.m, context.WithoutCancel(ctx)
	b.snapUndo.Success()
	oldDisk := b.pcfg.Disk
	b.pcfg.Disk = b.nextDisk
	b.mc.inst.SetConfig(b.pcfg)
	b.parent.Machine = machineJSON(b.pcfg)
	if err := m.store.Update(bg, func(tx *store.Tx) error {
		if err := tx.UpdateVM(bg, b.parent); err != nil {
			return err
		}
		return tx.SetSnapshotPhase(bg, b.snap.ID, store.PhaseFrozen)
	}); err != nil {
		m.log.Error("record parent disk", "id", b.parent.ID, "err", err)
		return err
	}
	// The old top's VM-directory name goes; the snapshot's name stays.
	os.Remove(oldDisk)
	// If the children fail, the branch ends here: the snapshot lives on as
	// the parent's layer, and what only children would use is collected.
	b.undo.Add(func() { m.finishBranch(bg, b.snap); m.collect(bg) })
	return nil
}

// started is one child's start: its handle, when it was ready, how long
// each step took, or why not.
type started struct {
	mc     *machine
	ready  time.Duration
	phases childPhases
	err    error
}

// childPhases is where a child's start went: its RAM file made (ram),
// its network and QEMU up to a QMP connection (qemu), the device state
// loaded and the guest running (load), and the agent answering and synced
// (agent).
type childPhases struct {
	ram, qemu, load, agent time.Duration
}

// startChildren starts the children from the snapshot, ChildStarts of
// them at a time; the ones that started are undone if any failed. A
// child's start is mostly CPU (its QEMU, the guest resuming, the agent's
// handover): fifty at once on two cores would each take fifty times as
// long, past their deadlines, and the first would be ready no sooner than
// the last. A child's deadlines begin when its start does.
func (b *branch) startChildren(ctx context.Context) error {
	b.out = make([]started, len(b.kids))
	slots := make(chan struct{}, b.childStarts())
	var wg sync.WaitGroup
	// In order: the children whose QEMU started early take the first slots.
	for i := range b.kids {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			b.out[i] = started{ready: time.Since(b.start), err: ctx.Err()}
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-slots }()
			var ph childPhases
			mc, err := b.startChild(ctx, b.kids[i], b.kidCfgs[i], b.earlyFor(i), &ph)
			b.out[i] = started{mc: mc, ready: time.Since(b.start), phases: ph, err: err}
		}(i)
	}
	wg.Wait()
	b.prefetches.Wait() // none outlives the branch
	for _, o := range b.out {
		if o.mc != nil {
			mc := o.mc
			b.undo.Add(func() { mc.closeAgent(); mc.inst.Close(); b.m.hv.Kill(mc.inst.Config()) })
		}
	}
	for i, o := range b.out {
		if o.err != nil {
			return fmt.Errorf("child %d of %d: %w", i+1, len(b.kids), o.err)
		}
	}
	return nil
}

// childStarts is how many children start at once.
func (b *branch) childStarts() int {
	if n := b.m.cfg.ChildStarts; n > 0 {
		return n
	}
	return 2 * runtime.NumCPU()
}

// startChild boots one child from the snapshot and hands it over clean:
// clock set, RNG reseeded, hostname its own. With early, its QEMU was
// started in the prepare: the phase "qemu" is then the wait for it, after
// the RAM.
func (b *branch) startChild(ctx context.Context, row store.VM, cfg qemu.Config, early *earlyStart, ph *childPhases) (*machine, error) {
	m := b.m
	ctx, cancel := context.WithTimeout(ctx, childTimeout)
	defer cancel()
	mark := time.Now()
	lap := func(d *time.Duration) { now := time.Now(); *d, mark = now.Sub(mark), now }
	inst, err := b.childProcess(ctx, row, cfg, early, lap, ph)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*machine, error) {
		inst.Stop(context.WithoutCancel(ctx))
		m.unplaceVM(row.ID)
		return nil, err
	}
	if err := inst.LoadState(ctx, b.snap.StatePath); err != nil {
		return fail(err)
	}
	if st, _ := inst.Status(ctx); st != "running" {
		if err := inst.Cont(ctx); err != nil {
			return fail(err)
		}
	}
	lap(&ph.load)
	if err := m.inject("branch.child-start"); err != nil {
		return fail(err)
	}
	mc := newMachine(inst)
	if err := m.connect(ctx, mc, row, childAgentTimeout, true); err != nil {
		kept := m.keepConsole(cfg)
		return fail(fmt.Errorf("child agent: %w; console (whole log kept in %s):\n%s", err, kept, cfg.ConsoleTail(1500)))
	}
	lap(&ph.agent)
	if b.ram.pagesIn() {
		// Off the child's start: reading a 1 GiB guest's page table
		// entries takes milliseconds.
		b.prefetches.Add(1)
		go func() {
			defer b.prefetches.Done()
			b.notePageIns(mc)
		}()
	}
	return mc, nil
}

// childProcess is a child's QEMU with its RAM in place, waiting for its
// device state: the early one, or one started now.
func (b *branch) childProcess(ctx context.Context, row store.VM, cfg qemu.Config, early *earlyStart, lap func(*time.Duration), ph *childPhases) (Instance, error) {
	if early != nil {
		select {
		case <-early.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		lap(&ph.qemu)
		if early.err != nil {
			return nil, early.err // nothing of it runs
		}
		if err := b.ram.childStart(b, cfg, true); err != nil {
			return nil, err
		}
		lap(&ph.ram)
		return early.inst, nil
	}
	if err := b.ram.childStart(b, cfg, false); err != nil {
		return nil, err
	}
	lap(&ph.ram)
	inst, err := b.startProcess(ctx, row.ID, cfg)
	lap(&ph.qemu)
	return inst, err
}

// startProcess starts child id's QEMU, waiting for its state, in its own
// block I/O group; on failure nothing of it runs.
func (b *branch) startProcess(ctx context.Context, id string, cfg qemu.Config) (Instance, error) {
	m := b.m
	inst, err := m.hv.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m.ownVM(cfg)
	m.placeVM(id, inst.PID())
	return inst, nil
}

// record writes, in one transaction, that the children run from the
// snapshot, and hands them to the daemon.
func (b *branch) record(ctx context.Context) error {
	m, bg := b.m, context.WithoutCancel(ctx)
	if err := m.inject("branch.record"); err != nil {
		return err
	}
	if err := m.store.Update(bg, func(tx *store.Tx) error {
		for i, k := range b.kids {
			k.Machine, k.State, k.PID, k.SnapshotID = machineJSON(b.kidCfgs[i]), api.StateRunning, b.out[i].mc.inst.PID(), b.snap.ID
			k.BootMillis = b.out[i].ready.Milliseconds()
			b.kids[i] = k
			if err := tx.UpdateVM(bg, k); err != nil {
				return err
			}
			if err := tx.CopyDiskRefs(bg, b.diskFrom(), k.ID); err != nil {
				return err
			}
			if b.origin != nil {
				if err := tx.AddRef(bg, store.Ref{VMID: k.ID, SnapshotID: b.snap.ID, Kind: store.RefDisk}); err != nil {
					return err
				}
			}
			if err := tx.AddRef(bg, store.Ref{VMID: k.ID, SnapshotID: b.snap.ID, Kind: store.RefMem}); err != nil {
				return err
			}
		}
		if b.hold != "" {
			if err := holdSnapshot(bg, tx, b.parent.ID, b.hold, b.snap.ID); err != nil {
				return err
			}
		}
		return tx.SetSnapshotPhase(bg, b.snap.ID, store.PhaseReady)
	}); err != nil {
		return err
	}
	m.mu.Lock()
	for i, k := range b.kids {
		m.live[k.ID] = b.out[i].mc
	}
	m.mu.Unlock()
	return nil
}

func (b *branch) result() BranchResult {
	res := BranchResult{Parent: b.m.toAPI(b.parent), SnapshotID: b.snap.ID, Pause: b.pause}
	var first childPhases
	for i, k := range b.kids {
		res.Children = append(res.Children, b.m.toAPI(k))
		if i == 0 || b.out[i].ready < res.FirstReady {
			res.FirstReady, first = b.out[i].ready, b.out[i].phases
		}
		res.AllReady = max(res.AllReady, b.out[i].ready)
	}
	b.m.log.Info("branched", "parent", b.parent.ID, "snapshot", b.snap.ID, "children", len(b.kids), "ram", b.ram.name(),
		"pause_ms", b.pause.Milliseconds(), "first_ready_ms", res.FirstReady.Milliseconds(), "all_ready_ms", res.AllReady.Milliseconds(),
		"prepare_ms", b.prepared.Sub(b.start).Milliseconds(), "freeze_ms", b.frozen.Sub(b.prepared).Milliseconds(),
		"state_ms", b.saved.Sub(b.frozen).Milliseconds(), "children_ms", time.Since(b.saved).Milliseconds(),
		"first_ram_ms", first.ram.Milliseconds(), "first_qemu_ms", first.qemu.Milliseconds(),
		"first_load_ms", first.load.Milliseconds(), "first_agent_ms", first.agent.Milliseconds(),
		"pause_stop_us", b.steps.stop.Microseconds(), "pause_disk_us", b.steps.disk.Microseconds(),
		"pause_ram_us", b.steps.ram.Microseconds(), "pause_state_us", b.steps.state.Microseconds(),
		"pause_cont_us", b.steps.cont.Microseconds())
	return res
}

// pauseSteps are how long each step of the pause took, for the log: the
// stop (QMP's answer, before the pause begins), the disk switch, the RAM
// method's step (the clone, or the start of the copy), the device state,
// the cont.
type pauseSteps struct{ stop, disk, ram, state, cont time.Duration }

// within runs phase with a deadline of d.
func within(ctx context.Context, d time.Duration, phase func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return phase(ctx)
}

// resume runs a VM stopped by a branch again, whatever step it stopped in.
func (m *Manager) resume(ctx context.Context, inst Instance) {
	if st, _ := inst.Status(ctx); st != "running" {
		if err := inst.Cont(ctx); err != nil {
			m.log.Error("resume after a failed branch", "vm", inst.Config().Name, "err", err)
		}
	}
}
