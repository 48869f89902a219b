package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/poll"
	"vers/internal/store"
)

// machine is the daemon's handle on one running VM.
type machine struct {
	inst Instance

	// op is the VM's operation lock (a branch, a kill, a reboot): a
	// one-slot channel, so that taking it can give up when a context ends.
	op chan struct{}

	// dialMu lets one caller at a time dial the agent; the others wait for
	// its result instead of racing it for the guest's one channel.
	dialMu sync.Mutex

	mu     sync.Mutex
	agent  *agent.Client
	health health
	// resets are the recent guest reboots (see reboot.go).
	resets []time.Time
	// prefaulted: its file-backed RAM is mapped in whole (see prefault); it
	// stays so, so only a VM's first copy-method branch pays for it.
	prefaulted bool
}

// health is what the last check found wrong with a running VM.
type health int

const (
	healthOK health = iota
	// healthDiskFull: QEMU paused the guest because a write to its disk
	// failed for lack of space on the host.
	healthDiskFull
	// healthUnresponsive: QEMU did not answer in time (stopped, hung).
	healthUnresponsive
)

const (
	reasonExited       = "its QEMU exited"
	reasonLost         = "lost: its QEMU was gone when versd started (the host restarted, or the process was killed), and with it all the VM did since its last commit; `vers commit ls` lists what was kept"
	reasonDiskFull     = "host disk full: free space where the VMs' disks live; the VM resumes by itself"
	reasonUnresponsive = "QEMU is not answering; `vers kill` removes the VM"
)

func newMachine(inst Instance) *machine {
	return &machine{inst: inst, op: make(chan struct{}, 1)}
}

// lock takes the VM's operation lock, or gives up when ctx ends.
func (mc *machine) lock(ctx context.Context, what string) error {
	select {
	case mc.op <- struct{}{}:
		return nil
	default:
	}
	select {
	case mc.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: the VM is busy with another operation (%w): %w", what, ctx.Err(), errdefs.ErrConflict)
	}
}

func (mc *machine) tryLock() bool {
	select {
	case mc.op <- struct{}{}:
		return true
	default:
		return false
	}
}

func (mc *machine) unlock() { <-mc.op }

func (mc *machine) getHealth() health {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.health
}

func (mc *machine) setHealth(h health) (changed bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	changed = mc.health != h
	mc.health = h
	return changed
}

func (mc *machine) currentAgent() *agent.Client {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.agent
}

func (mc *machine) setAgent(c *agent.Client) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.agent = c
}

func (mc *machine) closeAgent() {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.agent != nil {
		mc.agent.Close()
		mc.agent = nil
	}
}

// dropAgent forgets c if it is still the VM's session, so the next call
// dials again.
func (mc *machine) dropAgent(c *agent.Client) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if c != nil && mc.agent == c {
		c.Close()
		mc.agent = nil
	}
}

// errExited: the VM's QEMU process exited before its agent answered.
var errExited = errors.New("the VM stopped before its agent answered (QEMU exited: the guest panicked or powered off)")

// exitPoll is how often a VM that is coming up is checked for a QEMU that
// exited.
const exitPoll = 100 * time.Millisecond

// connect dials the agent of mc, waits until the guest is up and brings its
// clock, entropy, hostname and machine id in line with the host; fromState
// says the guest was just made from a saved state (a branch child, a
// restore, a wake), whose TCP connections to other machines are reset
// (docs/branching.md, "What a child can rely on"). A QEMU that exits
// meanwhile (a guest that panicked or powered off) ends the wait at once.
// (A branch child's guest resumes inside its parent's session; the agent
// ends it when the new session begins: see internal/agent.)
func (m *Manager) connect(ctx context.Context, mc *machine, row store.VM, timeout time.Duration, fromState bool) error {
	dctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer from the guest agent after %s: %w", timeout, errdefs.ErrTimeout))
	defer cancel()
	wctx, cancelWatch := context.WithCancelCause(dctx)
	defer cancelWatch(nil)
	go func() {
		poll.Until(wctx, exitPoll, func() (bool, error) { return mc.inst.Exited(), nil })
		if mc.inst.Exited() {
			cancelWatch(errExited)
		}
	}()
	fail := func(err error) error {
		if cause := context.Cause(wctx); wctx.Err() != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}
	c, err := m.cfg.Dial(wctx, mc.inst.Config().AgentSocket())
	if err != nil {
		return fail(err)
	}
	seed := make([]byte, 64)
	rand.Read(seed)
	// Every session begins a segment of the guest's change journal: a
	// branch child's journal is its parent's up to here (vers diff).
	epoch := row.ID + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	sync := agent.SyncRequest{Time: time.Now(), Entropy: seed, Hostname: hostname(row), Epoch: epoch,
		MachineID: machineID(row.ID), ResetTCP: fromState}
	guest, err := c.SyncClock(wctx, sync)
	if err != nil {
		c.Close()
		return fail(fmt.Errorf("guest agent sync: %w", err))
	}
	// The clock the sync set is behind by the time its request took to
	// reach the guest (in a fresh child, hundreds of milliseconds): the
	// reply's reading, against the host's now, says by how much, and one
	// relative step (over code the sync just ran) corrects it. The finer
	// trim runs in the background.
	if off := time.Until(guest); !guest.IsZero() && off.Abs() > clockTolerance {
		if err := c.Sync(wctx, agent.SyncRequest{Adjust: -off}); err != nil {
			c.Close()
			return fail(fmt.Errorf("guest agent clock: %w", err))
		}
	}
	mc.setAgent(c)
	m.trimClockWith(row.ID, c)
	return nil
}
