// Package vm is the domain of vers: it creates, finds, recovers and kills
// virtual machines by combining the image cache, the QEMU driver, the guest
// agent and the metadata store. It owns the VM state machine
// (creating → running → dead) and makes every multi-step change undo itself
// on failure. It never speaks HTTP: the daemon translates requests to calls here.
package vm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/cgroup"
	"vers/internal/errdefs"
	"vers/internal/image"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/rampool"
	"vers/internal/revert"
	"vers/internal/store"
)

// Images is what the manager needs from the image cache.
type Images interface {
	Ensure(ctx context.Context, name string, progress io.Writer) (image.Info, error)
}

// Manager runs the VMs of one host.
type Manager struct {
	layout paths.Layout
	store  *store.Store
	images Images
	accel  string
	log    *slog.Logger
	host   HostLimits

	// BootTimeout bounds how long a new VM may take to answer through its agent.
	BootTimeout time.Duration

	mu   sync.Mutex
	live map[string]*machine // running VMs this daemon is attached to, by id
	// opMu serialises operations that change the set of VMs or the tree.
	opMu sync.Mutex
	// sparsing holds, per snapshot, a channel closed when the background
	// punching of its frozen RAM's zero pages is done.
	sparsing sync.Map
	// cloneRAM: the RAM directory can clone files (see internal/rampool).
	// Every new VM's RAM is then a shared file of its own there, and a branch
	// clones it instead of copying it.
	cloneRAM bool
	// returner gives deleted RAM files' blocks back to the host (clone only).
	returner *rampool.Returner
	// cgroupOnce: why VMs cannot have block I/O groups is logged once.
	cgroupOnce sync.Once
}

// machine is the daemon's handle on one running VM.
type machine struct {
	cfg  qemu.Config
	inst *qemu.Instance

	mu    sync.Mutex
	agent *agent.Client
	// prefaulted: its file-backed RAM is mapped in whole (see prefault);
	// it stays so, so only a VM's first branch pays for it.
	prefaulted bool
}

// UseRAMPool tells the manager what the RAM directory can do. Call it before
// Recover.
func (m *Manager) UseRAMPool(p rampool.Pool) {
	m.cloneRAM = p.Reflink
	method := "copy (background snapshot)"
	if p.Reflink {
		method = "clone (reflink)"
		m.returner = rampool.NewReturner(p.Dir, m.log)
	}
	m.log.Info("guest RAM", "dir", p.Dir, "branch", method)
}

// New returns a manager; call Recover before serving.
func New(layout paths.Layout, st *store.Store, images Images, log *slog.Logger) *Manager {
	return &Manager{
		layout:      layout,
		store:       st,
		images:      images,
		accel:       qemu.DetectAccel(),
		log:         log,
		host:        ReadHostLimits(layout.VMsDir()),
		BootTimeout: bootTimeout(),
		live:        map[string]*machine{},
	}
}

// bootTimeout is 90 s, or VERS_BOOT_TIMEOUT (a Go duration) when set.
func bootTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("VERS_BOOT_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 90 * time.Second
}

// Accel is the accelerator VMs use: "kvm" or "tcg".
func (m *Manager) Accel() string { return m.accel }

// Spec is what a new VM is made from.
type Spec struct {
	Alias  string
	MemMiB int
	VCPUs  int
	FsMiB  int
	Kernel string
	Rootfs string
	// Network is "isolated" (also when empty) or "none"; see qemu.NetMode.
	Network string
}

var aliasRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateAlias reports whether s can name a VM.
func ValidateAlias(s string) error {
	if s == "" || aliasRE.MatchString(s) {
		return nil
	}
	return fmt.Errorf("alias %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit: %w", s, errdefs.ErrInvalid)
}

// Create boots a VM and returns once its agent answers.
func (m *Manager) Create(ctx context.Context, spec Spec) (api.VM, error) {
	if err := ValidateAlias(spec.Alias); err != nil {
		return api.VM{}, err
	}
	if err := m.host.Check(spec.MemMiB, spec.VCPUs, spec.FsMiB); err != nil {
		return api.VM{}, err
	}
	if _, err := qemu.Binary(); err != nil {
		return api.VM{}, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	network, err := qemu.ParseNetMode(spec.Network)
	if err != nil {
		return api.VM{}, fmt.Errorf("network mode %q: use %q (outbound connections only) or %q (no network): %w",
			spec.Network, qemu.NetIsolated, qemu.NetNone, errdefs.ErrInvalid)
	}
	if network == qemu.NetIsolated {
		if _, err := qemu.PasstBinary(); err != nil {
			return api.VM{}, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
		}
	}
	kernel, err := m.images.Ensure(ctx, spec.Kernel, nil)
	if err != nil {
		return api.VM{}, imageErr("kernel", spec.Kernel, err)
	}
	rootfs, err := m.images.Ensure(ctx, spec.Rootfs, nil)
	if err != nil {
		return api.VM{}, imageErr("rootfs", spec.Rootfs, err)
	}
	if kernel.Kind != image.KindKernel {
		return api.VM{}, fmt.Errorf("image %q is a %s, not a kernel: %w", spec.Kernel, kernel.Kind, errdefs.ErrInvalid)
	}
	if rootfs.Kind != image.KindRootfs {
		return api.VM{}, fmt.Errorf("image %q is a %s, not a root filesystem: %w", spec.Rootfs, rootfs.Kind, errdefs.ErrInvalid)
	}
	if spec.FsMiB < rootfs.SizeMiB {
		return api.VM{}, fmt.Errorf("fs_size_vm_mib %d is smaller than the %q image (%d MiB); use at least %d: %w",
			spec.FsMiB, spec.Rootfs, rootfs.SizeMiB, rootfs.SizeMiB, errdefs.ErrInvalid)
	}

	m.opMu.Lock()
	defer m.opMu.Unlock()

	start := time.Now()
	row := store.VM{
		ID: uuid.NewString(), Alias: spec.Alias, State: api.StateCreating,
		MemMiB: spec.MemMiB, VCPUs: spec.VCPUs, FsMiB: spec.FsMiB,
		Kernel: spec.Kernel, Rootfs: spec.Rootfs, CreatedAt: start,
	}
	undo := revert.New()
	defer undo.Fail()

	// The row comes first: it reserves the alias, and a daemon that dies
	// during the next steps finds a "creating" row and cleans up after it.
	if err := m.store.CreateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	undo.Add(func() { m.store.DeleteVM(context.WithoutCancel(ctx), row.ID) })

	dir := m.layout.VMDir(row.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return api.VM{}, fmt.Errorf("create vm dir: %w", err)
	}
	undo.Add(func() { os.RemoveAll(dir) })

	cfg, err := m.qemuConfig(row, kernel).WithHostDefaults()
	if err != nil {
		return api.VM{}, err
	}
	cfg.Network = network
	if err := cfg.Validate(); err != nil {
		return api.VM{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	machineJSON, _ := json.Marshal(cfg)
	row.Machine = string(machineJSON)
	if err := m.store.UpdateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	if err := qemu.CreateOverlay(ctx, rootfs.Path, "raw", cfg.Disk, spec.FsMiB); err != nil {
		return api.VM{}, fmt.Errorf("create disk: %w", err)
	}
	if cfg.MemPath != "" {
		undo.Add(func() { os.Remove(cfg.MemPath) })
	}
	inst, err := qemu.Start(ctx, cfg)
	if err != nil {
		return api.VM{}, fmt.Errorf("start qemu: %w", err)
	}
	undo.Add(func() { inst.Stop(context.WithoutCancel(ctx)); cgroup.Remove(row.ID) })
	m.placeVM(row.ID, inst.PID())

	mc := &machine{cfg: cfg, inst: inst}
	if err := m.connect(ctx, mc, row, m.BootTimeout); err != nil {
		kept := m.keepConsole(cfg)
		return api.VM{}, fmt.Errorf("vm did not come up: %w; console (whole log kept in %s):\n%s", err, kept, cfg.ConsoleTail(1500))
	}
	undo.Add(func() { mc.closeAgent() })

	row.State = api.StateRunning
	row.PID = inst.PID()
	row.BootMillis = time.Since(start).Milliseconds()
	if err := m.store.UpdateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	m.mu.Lock()
	m.live[row.ID] = mc
	m.mu.Unlock()
	undo.Success()
	m.log.Info("vm created", "id", row.ID, "alias", row.Alias, "pid", row.PID, "boot_ms", row.BootMillis)
	return toAPI(row), nil
}

func imageErr(kind, name string, err error) error {
	switch {
	case errors.Is(err, image.ErrUnknown):
		return fmt.Errorf("%s %w: %w", kind, err, errdefs.ErrInvalid)
	case errors.Is(err, image.ErrInvalid):
		return fmt.Errorf("%s image %q: %w: %w", kind, name, err, errdefs.ErrInvalid)
	}
	return fmt.Errorf("%s image %q: %w", kind, name, err)
}

func (m *Manager) qemuConfig(row store.VM, kernel image.Info) qemu.Config {
	dir := m.layout.VMDir(row.ID)
	c := qemu.Config{
		Name:   row.ID,
		Dir:    dir,
		MemMiB: row.MemMiB,
		VCPUs:  row.VCPUs,
		Kernel: kernel.Path,
		Initrd: kernel.Initrd,
		Disk:   dir + "/disk.qcow2",
		Accel:  m.accel,
	}
	if m.cloneRAM {
		c.MemPath = ownRAM(row.ID)
	}
	return c
}

// connect dials the agent of mc, waits until the guest is up and brings its
// clock, entropy and hostname in line with the host.
// A QEMU that exits meanwhile (a guest that panicked or powered off) ends the
// wait at once.
func (m *Manager) connect(ctx context.Context, mc *machine, row store.VM, timeout time.Duration) error {
	dctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer from the guest agent after %s: %w", timeout, errdefs.ErrTimeout))
	defer cancel()
	wctx, cancelWatch := context.WithCancelCause(dctx)
	defer cancelWatch(nil)
	go func() {
		t := time.NewTicker(exitPoll)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if mc.inst.Exited() {
					cancelWatch(errExited)
					return
				}
			}
		}
	}()
	dctx = wctx
	c, err := agent.Dial(dctx, mc.cfg.AgentSocket())
	if err != nil {
		if cause := context.Cause(dctx); dctx.Err() != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}
	if _, err := c.Info(dctx); err != nil {
		c.Close()
		return fmt.Errorf("guest agent: %w", err)
	}
	seed := make([]byte, 64)
	rand.Read(seed)
	if err := c.Sync(dctx, agent.SyncRequest{Time: time.Now(), Entropy: seed, Hostname: hostname(row)}); err != nil {
		c.Close()
		return fmt.Errorf("guest agent sync: %w", err)
	}
	mc.mu.Lock()
	mc.agent = c
	mc.mu.Unlock()
	return nil
}

// placeVM gives a VM's QEMU a block I/O group of its own (internal/cgroup),
// so that the page-ins of VMs started together run in parallel. Best
// effort: where it cannot, VMs share one group, as the log says once.
func (m *Manager) placeVM(id string, pid int) {
	if err := cgroup.Place(id, pid); err != nil {
		m.cgroupOnce.Do(func() { m.log.Info("VMs share one block I/O group", "reason", err) })
	}
}

// exitPoll is how often a VM that is coming up is checked for a QEMU that
// exited.
const exitPoll = 100 * time.Millisecond

// errExited: the VM's QEMU process exited before its agent answered.
var errExited = errors.New("the VM stopped before its agent answered (QEMU exited: the guest panicked or powered off)")

func hostname(row store.VM) string {
	if row.Alias != "" {
		return row.Alias
	}
	return "vm-" + row.ID[:8]
}

func (mc *machine) closeAgent() {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.agent != nil {
		mc.agent.Close()
		mc.agent = nil
	}
}

// Get resolves ref (alias, id or id prefix) to a VM.
func (m *Manager) Get(ctx context.Context, ref string) (api.VM, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VM{}, err
	}
	return toAPI(row), nil
}

// List returns every VM, oldest first.
func (m *Manager) List(ctx context.Context) ([]api.VM, error) {
	rows, err := m.store.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.VM, 0, len(rows))
	for _, r := range rows {
		out = append(out, toAPI(r))
	}
	return out, nil
}

func toAPI(r store.VM) api.VM {
	return api.VM{
		ID: r.ID, Alias: r.Alias, State: r.State, ParentID: r.ParentID,
		MemMiB: r.MemMiB, VCPUs: r.VCPUs, FsMiB: r.FsMiB, Kernel: r.Kernel, Rootfs: r.Rootfs,
		PID: r.PID, CreatedAt: r.CreatedAt, BootMillis: r.BootMillis,
	}
}

// Agent returns a connected agent client for the running VM ref.
func (m *Manager) Agent(ctx context.Context, ref string) (*agent.Client, api.VM, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return nil, api.VM{}, err
	}
	mc, err := m.attached(row)
	if err != nil {
		return nil, toAPI(row), err
	}
	mc.mu.Lock()
	c := mc.agent
	mc.mu.Unlock()
	if c != nil {
		return c, toAPI(row), nil
	}
	if err := m.connect(ctx, mc, row, 20*time.Second); err != nil {
		if !qemu.Alive(mc.inst.PID()) {
			m.markDead(ctx, row)
			return nil, toAPI(row), fmt.Errorf("vm %s has stopped; `vers kill %s` removes it: %w", label(row), label(row), errdefs.ErrConflict)
		}
		return nil, toAPI(row), err
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.agent, toAPI(row), nil
}

// attached returns the daemon's handle on a running VM, or says why the VM
// cannot be used.
func (m *Manager) attached(row store.VM) (*machine, error) {
	switch row.State {
	case api.StateRunning:
	case api.StateDead:
		return nil, fmt.Errorf("vm %s is dead (its QEMU exited; console log in %s); `vers kill %s` removes it: %w",
			label(row), m.layout.VMDir(row.ID), label(row), errdefs.ErrConflict)
	default:
		return nil, fmt.Errorf("vm %s is %s, not running: %w", label(row), row.State, errdefs.ErrConflict)
	}
	m.mu.Lock()
	mc := m.live[row.ID]
	m.mu.Unlock()
	if mc == nil {
		return nil, fmt.Errorf("vm %s is not attached to this daemon: %w", label(row), errdefs.ErrUnavailable)
	}
	return mc, nil
}

// DropAgent forgets a broken agent connection so the next call redials.
func (m *Manager) DropAgent(id string, c *agent.Client) {
	m.mu.Lock()
	mc := m.live[id]
	m.mu.Unlock()
	if mc == nil {
		return
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.agent == c && c != nil {
		c.Close()
		mc.agent = nil
	}
}

func (m *Manager) markDead(ctx context.Context, row store.VM) {
	row.State = api.StateDead
	if err := m.store.UpdateVM(ctx, row); err != nil {
		m.log.Error("mark vm dead", "id", row.ID, "err", err)
	}
	m.mu.Lock()
	if mc := m.live[row.ID]; mc != nil {
		mc.closeAgent()
		mc.inst.Close()
		delete(m.live, row.ID)
	}
	m.mu.Unlock()
	m.log.Warn("vm is dead", "id", row.ID, "alias", row.Alias)
}

func label(r store.VM) string {
	if r.Alias != "" {
		return r.Alias
	}
	return r.ID
}
