package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/qemu"
)

// ramFreezer is how a branch freezes the parent's RAM into the snapshot and
// gives each child its RAM. Its steps run inside the branch's phases.
type ramFreezer interface {
	name() string
	// prepare runs first in the prepare phase, while the parent runs.
	prepare(ctx context.Context, b *branch) error
	// childRAM sets a child's RAM in its machine.
	childRAM(b *branch, c *qemu.Config, id string)
	// beforeFreeze runs last before the pause: what makes the pause short.
	beforeFreeze(ctx context.Context, b *branch) error
	// freeze runs in the pause, after the disk switch; it must leave the
	// parent running (stopped if a user paused it: b.paused), and returns
	// how long it was stopped.
	freeze(ctx context.Context, b *branch, stopped time.Time) (time.Duration, error)
	// finish completes the snapshot after the pause.
	finish(ctx context.Context, b *branch) error
	// startsEarly says whether children's processes may start before the
	// freeze (branch.startEarly).
	startsEarly() bool
	// childStart puts a child's RAM in place: before its process starts,
	// or, with early, after it started before the freeze.
	childStart(b *branch, c qemu.Config, early bool) error
	// done runs once every child runs.
	done(b *branch)
	// pagesIn says whether a child reads its RAM from a file of its own
	// as it touches it, so that prefetching it pays (pagein.go).
	pagesIn() bool
}

// freezerFor picks the method for a parent: clone where its RAM is a shared
// file of its own on a RAM filesystem that clones files — every VM made on
// such a host — and copy everywhere else.
func (m *Manager) freezerFor(pcfg qemu.Config) ramFreezer {
	if m.cfg.CloneRAM && pcfg.MemPath != "" && !pcfg.MemPrivate {
		return cloneRAM{}
	}
	return &copyRAM{}
}

// cloneRAM freezes RAM by cloning the parent's RAM file:
//
//  1. The parent's dirty RAM pages are written to its file while it runs.
//  2. In the pause the file is cloned into the snapshot (its blocks shared,
//     not copied: milliseconds, whatever the size), and the device state is
//     saved without RAM (it is in the file). Blocks are
//     copied later, one by one, when the parent or a child writes them.
//  3. Each child gets its own clone of the snapshot's RAM. A child's RAM is
//     again a file of its own, so a child is branched exactly like its
//     parent, at any depth.
type cloneRAM struct{}

func (cloneRAM) name() string                                 { return "clone" }
func (cloneRAM) prepare(ctx context.Context, b *branch) error { return nil }

func (cloneRAM) childRAM(b *branch, c *qemu.Config, id string) {
	c.MemPath, c.MemPrivate = b.m.ownRAM(id), false
}

func (cloneRAM) beforeFreeze(ctx context.Context, b *branch) error {
	if err := b.m.cfg.RAM.Flush(b.pcfg.MemPath); err != nil {
		return fmt.Errorf("flush guest RAM: %w", err)
	}
	return nil
}

func (cloneRAM) freeze(ctx context.Context, b *branch, stopped time.Time) (time.Duration, error) {
	inst, bg := b.mc.inst, context.WithoutCancel(ctx)
	fail := func(err error) (time.Duration, error) {
		b.restore(bg)
		return 0, err
	}
	mark := time.Now()
	lap := func(d *time.Duration) { now := time.Now(); *d, mark = now.Sub(mark), now }
	if err := b.m.cfg.RAM.Clone(b.pcfg.MemPath, b.snap.MemPath); err != nil {
		return fail(fmt.Errorf("freeze guest RAM: %w", err))
	}
	lap(&b.steps.ram)
	if err := inst.SaveState(ctx, b.snap.StatePath); err != nil {
		return fail(fmt.Errorf("save device state: %w", b.m.qemuErr(b.parent, err)))
	}
	lap(&b.steps.state)
	if b.paused {
		return 0, nil // it stays paused
	}
	if err := inst.Cont(ctx); err != nil {
		return fail(b.m.qemuErr(b.parent, err))
	}
	lap(&b.steps.cont)
	return time.Since(stopped), nil
}

func (cloneRAM) finish(ctx context.Context, b *branch) error { return nil }

// startsEarly: a child's QEMU can map its RAM file before the file holds
// anything; the clone is made over it.
func (cloneRAM) startsEarly() bool { return true }

func (cloneRAM) childStart(b *branch, c qemu.Config, early bool) error {
	clone := b.m.cfg.RAM.Clone
	if early {
		clone = b.m.cfg.RAM.CloneOver
	}
	if err := clone(b.snap.MemPath, c.MemPath); err != nil {
		return err
	}
	b.prefetchRAM(c.MemPath)
	return nil
}

// pagesIn: a child reads its RAM file's pages at its faults (pagein.go).
func (cloneRAM) pagesIn() bool { return true }

// done: a clone has no zero pages to give back (a page never written is a
// hole in every file).
func (cloneRAM) done(b *branch) {}

// copyRAM freezes RAM by copying it, where no file can share another's
// blocks (a plain tmpfs):
//
//  1. A "holder" QEMU is started beside the parent, identical but for its
//     RAM, a fresh shared file S, and waiting for an incoming migration.
//  2. In the pause a background-snapshot migration into the holder starts:
//     QEMU write-protects guest RAM and resumes the guest itself. RAM then
//     streams to the holder as it was at the stop, each page the guest
//     writes being copied out first. The pause does not grow with RAM.
//  3. The holder saves the device state without RAM (S is the RAM) and goes.
//  4. Each child maps S copy-on-write (share=off), loads the device state and
//     runs: children share every page of S they have not written.
//
// A parent a user paused is copied by a plain migration instead: its RAM
// cannot change, and QEMU 7.2's background snapshot resumes the guest
// whether or not it ran before.
//
// (A live pre-copy, the usual migration, was tried first: under TCG in QEMU
// 7.2 children made from it crashed now and then with corrupted kernel
// memory — pages written during the copy were lost. Write-protection does
// not depend on dirty tracking. See docs/branching.md.)
type copyRAM struct {
	holder Instance
}

func (*copyRAM) name() string { return "copy" }

// prepare starts the holder, which never runs the guest (-S).
func (c *copyRAM) prepare(ctx context.Context, b *branch) error {
	h := b.pcfg
	h.Name = "snap-" + b.snap.ID
	h.Dir = filepath.Join(b.snap.Dir, "h")
	h.MemPath, h.MemPrivate = b.snap.MemPath, false
	h.Incoming, h.Frozen = true, true
	// The same network device, with no network behind it.
	h.Network = h.Network.Unplugged()
	// The holder needs a disk of the same shape but never reads it.
	h.Disk = filepath.Join(h.Dir, "scratch.qcow2")
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return err
	}
	if err := b.m.hv.CreateBlank(ctx, h.Disk, b.parent.FsMiB); err != nil {
		return err
	}
	inst, err := b.m.hv.Start(ctx, h)
	if err != nil {
		return fmt.Errorf("start snapshot holder: %w", err)
	}
	b.m.ownVM(h)
	c.holder = inst
	bg := context.WithoutCancel(ctx)
	b.undo.Add(func() { inst.Stop(bg) })
	return nil
}

func (*copyRAM) childRAM(b *branch, c *qemu.Config, id string) {
	c.MemPath, c.MemPrivate = b.snap.MemPath, true
}

func (c *copyRAM) beforeFreeze(ctx context.Context, b *branch) error {
	m := b.m
	// Prefaulting makes the write-protection of a background snapshot
	// quick; a paused parent has none.
	if !b.paused && b.pcfg.MemPath != "" && !b.mc.prefaulted {
		// Punching the snapshot's zero pages unmaps them again: let it end.
		if ch, ok := m.sparsing.Load(b.parent.SnapshotID); ok {
			select {
			case <-ch.(chan struct{}):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := prefault(b.mc.inst.PID(), b.pcfg.MemPath); err != nil {
			m.log.Warn("prefault guest RAM", "vm", b.parent.ID, "err", err)
		} else {
			b.mc.prefaulted = true
		}
	}
	if err := c.holder.SetRAMMode(ctx, qemu.RAMFull); err != nil {
		return err
	}
	if err := c.holder.ListenRAM(ctx, "unix:"+c.socket(b)); err != nil {
		return fmt.Errorf("holder: %w", err)
	}
	if b.paused {
		return b.mc.inst.SetRAMMode(ctx, qemu.RAMFull)
	}
	return b.mc.inst.SetRAMMode(ctx, qemu.RAMBackground)
}

func (*copyRAM) socket(b *branch) string { return filepath.Join(b.snap.Dir, "m.sock") }

// freeze starts the background snapshot; QEMU resumes the guest itself once
// its RAM is write-protected. It returns the pause once the holder has all
// of RAM. (A paused parent's RAM goes by a plain migration, and it stays
// stopped.)
func (c *copyRAM) freeze(ctx context.Context, b *branch, stopped time.Time) (time.Duration, error) {
	parent, bg := b.mc.inst, context.WithoutCancel(ctx)
	if err := parent.SendRAM(ctx, "unix:"+c.socket(b)); err != nil {
		b.restore(bg)
		return 0, b.m.qemuErr(b.parent, err)
	}
	if !b.paused {
		if err := parent.WaitRunning(ctx); err != nil {
			parent.CancelMigration(bg)
			b.restore(bg)
			return 0, b.m.qemuErr(b.parent, err)
		}
	}
	pause := time.Since(stopped)
	b.steps.ram = pause - b.steps.disk
	mig, err := parent.WaitRAMSent(ctx)
	if err != nil {
		parent.CancelMigration(bg)
		return pause, err
	}
	b.m.log.Debug("snapshot copy", "total_ms", mig.TotalTime, "setup_ms", mig.SetupTime, "normal_pages", mig.RAM.Normal,
		"zero_pages", mig.RAM.Duplicate, "transferred", mig.RAM.Transferred)
	if err := c.holder.WaitLoaded(ctx); err != nil {
		return pause, fmt.Errorf("holder: %w", err)
	}
	return pause, nil
}

// finish has the holder write the device state; its RAM is the snapshot.
func (c *copyRAM) finish(ctx context.Context, b *branch) error {
	if err := c.holder.SaveState(ctx, b.snap.StatePath); err != nil {
		return fmt.Errorf("save device state: %w", err)
	}
	// The holder is paused, holds nothing that needs flushing and never
	// writes S again: it is killed outright (a graceful quit costs QEMU a
	// second or more of CPU), off the children's path.
	h := c.holder
	go func() {
		h.Close()
		b.m.hv.Kill(h.Config())
	}()
	return nil
}

// startsEarly: a child maps S, which exists only once the holder has it.
func (*copyRAM) startsEarly() bool { return false }

func (*copyRAM) childStart(b *branch, c qemu.Config, early bool) error { return nil }

// done gives back the frozen RAM's zero pages, off the critical path.
func (*copyRAM) done(b *branch) { b.m.sparsify(b.snap.ID, b.snap.MemPath) }

// pagesIn: no, a child maps the frozen RAM, in memory already.
func (*copyRAM) pagesIn() bool { return false }

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
