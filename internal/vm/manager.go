// Package vm is the domain of vers: it creates, branches, finds, recovers
// and kills virtual machines, and runs commands and moves files in them. It
// owns the VM state machine (creating → running ⇄ paused → dead) and makes
// every multi-step change undo itself on failure.
//
// It sees the hypervisor, the guest agent and the RAM filesystem only
// through the small interfaces of ports.go, so every use case is unit-tested
// on fakes. It never speaks HTTP (the daemon translates requests into calls
// here) and never holds a lock across a boot or a call into a VM that has no
// deadline: operations lock the one VM they change, and the store keeps
// its own transactions.
package vm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/cgroup"
	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/rampool"
	"vers/internal/store"
)

// Config is everything the manager is built from; the daemon fills it once.
type Config struct {
	Layout paths.Layout
	Store  *store.Store
	Images Images
	Log    *slog.Logger

	Hypervisor Hypervisor
	Dial       AgentDialer
	RAM        RAMFiles
	Groups     Groups
	// Accel is "kvm" or "tcg".
	Accel string
	// FixedLayout starts the programs of every exec without address-space
	// randomization (agent.ExecRequest.FixedLayout).
	FixedLayout bool
	// RAMDir holds guest RAM files; CloneRAM says its files can be cloned
	// (internal/rampool), so that a branch clones RAM instead of copying it.
	RAMDir   string
	CloneRAM bool
	// Returner gives deleted RAM files' blocks back to the host (clone only).
	Returner *rampool.Returner
	// Host is what the host can give VMs.
	Host HostLimits
	// BootTimeout bounds how long a new VM may take to answer through its agent.
	BootTimeout time.Duration
	// Chunks is the store commits are kept in.
	Chunks *chunk.Store
	// Events gets every change (events.go); nil drops them.
	Events Events
	// ChildStarts bounds the children of one branch that start at once; 0
	// is twice the host's CPUs (see startChildren).
	ChildStarts int
}

// Groups puts VM processes in block I/O groups of their own.
type Groups interface {
	Place(id string, pid int) error
	Remove(id string) error
}

// CgroupGroups is Groups on the host's control groups (internal/cgroup).
type CgroupGroups struct{}

func (CgroupGroups) Place(id string, pid int) error { return cgroup.Place(id, pid) }
func (CgroupGroups) Remove(id string) error         { return cgroup.Remove(id) }

// Manager runs the VMs of one host.
type Manager struct {
	cfg   Config
	store *store.Store
	hv    Hypervisor
	log   *slog.Logger

	mu   sync.Mutex
	live map[string]*machine // running VMs this daemon is attached to, by id

	// admitMu makes "is there room, then reserve it" one step: it is held
	// only while the rows that reserve memory are checked and written.
	admitMu sync.Mutex
	// sparsing holds, per snapshot, a channel closed when the background
	// punching of its frozen RAM's zero pages is done.
	sparsing sync.Map
	// chunkMu: writers of the chunk store (commits, imports, restores
	// reading it) hold the read side, garbage collection the write side,
	// so that nothing is swept that a commit under way uses.
	chunkMu sync.RWMutex
	// waking holds the ids of the VMs being woken.
	waking sync.Map
	// cgroupOnce: why VMs cannot have block I/O groups is logged once.
	cgroupOnce sync.Once
	// ownOnce: why RAM files cannot record their owner is logged once.
	ownOnce sync.Once
	// failpoint, when set (tests), decides which named steps fail.
	failpoint func(point string) error
	// pauses holds, per VM id, the last pause a branch or commit of it made
	// (an api.PauseRecord, info.go); in memory only, empty after a restart.
	pauses sync.Map
	// branches holds, per VM id, its last branch (api.BranchRecord), in
	// memory as pauses.
	branches sync.Map
	// pageIns: per VM, the RAM its children touch as they start (pagein.go).
	pageIns pageIns
	// pss, when set (tests), reads a process's PSS instead of /proc.
	pss func(pid int) (int64, error)
}

// New returns a manager; call Recover before serving.
func New(cfg Config) *Manager {
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = 90 * time.Second
	}
	method := "copy (background snapshot)"
	if cfg.CloneRAM {
		method = "clone (reflink)"
	}
	cfg.Log.Info("guest RAM", "dir", cfg.RAMDir, "branch", method)
	return &Manager{cfg: cfg, store: cfg.Store, hv: cfg.Hypervisor, log: cfg.Log, live: map[string]*machine{}}
}

// Accel is the accelerator VMs use: "kvm" or "tcg".
func (m *Manager) Accel() string { return m.cfg.Accel }

var (
	aliasRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	// idLikeRE matches what reads as a VM id or an id prefix as people copy
	// them (eight hex digits or more, as a short commit hash).
	idLikeRE = regexp.MustCompile(`^[0-9a-fA-F-]{8,}$`)
)

// ValidateAlias reports whether s can name a VM. An alias never looks like
// an id (eight or more hex digits and '-'), so such a name always means an
// id; a shorter word means the VM with that alias before any id prefix.
func ValidateAlias(s string) error {
	switch {
	case s == "":
		return nil
	case !aliasRE.MatchString(s):
		return fmt.Errorf("alias %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit: %w", s, errdefs.ErrInvalid)
	case idLikeRE.MatchString(s):
		return fmt.Errorf("alias %q could be read as a VM id (eight or more hex digits and '-'); use a letter from g to z, '_' or '.' in it: %w", s, errdefs.ErrInvalid)
	}
	return nil
}

// Get resolves ref (alias, id or id prefix) to a VM.
func (m *Manager) Get(ctx context.Context, ref string) (api.VM, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VM{}, err
	}
	return m.toAPI(row), nil
}

// List returns every VM, oldest first.
func (m *Manager) List(ctx context.Context) ([]api.VM, error) {
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.VM, 0, len(rows))
	for _, r := range rows {
		out = append(out, m.toAPI(r))
	}
	return out, nil
}

// toAPI is a row as the API shows it, with what the daemon knows now: a VM
// whose process has just exited is dead, whatever the last check recorded,
// and a VM that is paused by the host or stopped answering says so. A VM a
// user paused stays paused whatever its disk does.
func (m *Manager) toAPI(r store.VM) api.VM {
	v := api.VM{
		ID: r.ID, Alias: r.Alias, State: r.State, ParentID: r.ParentID,
		MemMiB: r.MemMiB, VCPUs: r.VCPUs, FsMiB: r.FsMiB, Kernel: r.Kernel, Rootfs: r.Rootfs,
		PID: r.PID, CreatedAt: r.CreatedAt, BootMillis: r.BootMillis,
		OriginCommit: r.OriginCommit, LastCommit: r.LastCommit,
	}
	if r.State == api.StatePaused {
		v.StateReason = api.ReasonPaused
	} else if r.State != api.StateRunning {
		v.StateReason = r.StateReason
	}
	if r.State != api.StateRunning && r.State != api.StatePaused {
		return v
	}
	mc := m.machine(r.ID)
	if mc == nil {
		return v
	}
	if mc.inst.Exited() {
		v.State, v.StateReason = api.StateDead, reasonExited
		return v
	}
	switch h := mc.getHealth(); {
	case h == healthDiskFull && r.State == api.StateRunning:
		v.State, v.StateReason = api.StatePaused, reasonDiskFull
	case h == healthUnresponsive:
		v.State, v.StateReason = api.StateUnresponsive, reasonUnresponsive
	}
	return v
}

// machine returns the daemon's handle on the running VM id, or nil.
func (m *Manager) machine(id string) *machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

// attached returns the daemon's handle on a running or paused VM, or says
// why the VM cannot be used.
func (m *Manager) attached(row store.VM) (*machine, error) {
	switch row.State {
	case api.StateRunning, api.StatePaused:
	case api.StateSleeping:
		return nil, fmt.Errorf("vm %s is sleeping (its state is in commit %s); `vers wake %s` brings it back: %w",
			label(row), short(row.LastCommit), label(row), errdefs.ErrConflict)
	case api.StateDead:
		return nil, fmt.Errorf("vm %s is dead (its QEMU exited; console log in %s); `vers kill %s` removes it: %w",
			label(row), m.cfg.Layout.VMDir(row.ID), label(row), errdefs.ErrConflict)
	default:
		return nil, fmt.Errorf("vm %s is %s, not running: %w", label(row), row.State, errdefs.ErrConflict)
	}
	mc := m.machine(row.ID)
	if mc == nil {
		return nil, fmt.Errorf("vm %s is not attached to this daemon; restarting versd re-attaches it: %w", label(row), errdefs.ErrUnavailable)
	}
	if mc.inst.Exited() {
		return nil, fmt.Errorf("vm %s has stopped (its QEMU exited; console log in %s); `vers kill %s` removes it: %w",
			label(row), m.cfg.Layout.VMDir(row.ID), label(row), errdefs.ErrConflict)
	}
	return mc, nil
}

// markDead records that a VM's process is gone and lets go of it. A VM that
// an operation holds is left to that operation, which fails on its own.
func (m *Manager) markDead(ctx context.Context, row store.VM, reason string) {
	mc := m.machine(row.ID)
	if mc != nil {
		if !mc.tryLock() {
			return
		}
		defer mc.unlock()
	}
	row.State, row.StateReason = api.StateDead, reason
	if err := m.store.UpdateVM(ctx, row); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Error("mark vm dead", "id", row.ID, "err", err)
	}
	m.forget(row.ID)
	m.log.Warn("vm is dead", "id", row.ID, "alias", row.Alias)
	m.publishVM(api.EventVMState, row, reason)
}

// forget drops the daemon's handle on a VM (its agent session, its
// control connection); the process itself is not touched.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	mc := m.live[id]
	delete(m.live, id)
	m.mu.Unlock()
	if mc != nil {
		mc.closeAgent()
		mc.inst.Close()
	}
}

// placeVM gives a VM's QEMU a block I/O group of its own, so that the
// page-ins of VMs started together run in parallel. Best effort: where it
// cannot, VMs share one group, as the log says once.
func (m *Manager) placeVM(id string, pid int) {
	if m.cfg.Groups == nil {
		return
	}
	if err := m.cfg.Groups.Place(id, pid); err != nil {
		m.cgroupOnce.Do(func() { m.log.Info("VMs share one block I/O group", "reason", err) })
	}
}

func (m *Manager) unplaceVM(id string) {
	if m.cfg.Groups != nil {
		m.cfg.Groups.Remove(id)
	}
}

// ownRAM is the file a VM's RAM lives in when it has a file of its own.
func (m *Manager) ownRAM(id string) string { return filepath.Join(m.cfg.RAMDir, id+".ram") }

// VMOfRAMFile is the VM whose RAM the file at path holds (its own, or a
// generation of it after a restore in place); ok is false for a
// snapshot's frozen RAM or a file vers did not name.
func VMOfRAMFile(path string) (id string, ok bool) {
	name, isRAM := strings.CutSuffix(filepath.Base(path), ".ram")
	if !isRAM || strings.HasPrefix(name, "snap-") {
		return "", false
	}
	id, _, _ = strings.Cut(name, ".")
	return id, id != ""
}

// own records on a RAM file this daemon made that it is this home's
// (rampool.Own). It never fails an operation: without it, only the RAM of a
// home deleted while its daemon is down stays behind.
func (m *Manager) own(path string) {
	if path == "" {
		return
	}
	home, err := filepath.Abs(m.cfg.Layout.Home)
	if err == nil {
		err = m.cfg.RAM.Own(path, home)
	}
	if err != nil {
		m.ownOnce.Do(func() {
			m.log.Warn("RAM files cannot record their owner: if this home is deleted while its daemon is down, its VMs' RAM stays until the host restarts", "err", err)
		})
	}
}

// ownVM is own for the RAM file a VM's QEMU just started on, if it has one
// of its own.
func (m *Manager) ownVM(c qemu.Config) {
	if !c.MemPrivate {
		m.own(c.MemPath)
	}
}

// snapRAM is a snapshot's frozen RAM.
func (m *Manager) snapRAM(sid string) string { return filepath.Join(m.cfg.RAMDir, "snap-"+sid+".ram") }

// short is the first twelve characters of an id, as ids are shown.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func label(r store.VM) string {
	if r.Alias != "" {
		return r.Alias
	}
	return r.ID
}

// hostname is the name a VM's guest gets: its alias, or one made of its id.
func hostname(row store.VM) string {
	if row.Alias != "" {
		return row.Alias
	}
	return "vm-" + row.ID[:8]
}

// machineID is the /etc/machine-id of VM id: its own, so a branch child
// has a new one, and the same at every boot and wake of the VM. It is
// derived rather than the id itself, which systemd asks not to expose.
func machineID(id string) string {
	sum := sha256.Sum256([]byte("vers machine-id\x00" + id))
	return hex.EncodeToString(sum[:16])
}

// agentDialTimeout bounds a dial of a running VM's agent (one that has
// answered before, so it is up).
const agentDialTimeout = 20 * time.Second

var _ = agent.Dial
