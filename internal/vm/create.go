package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/image"
	"vers/internal/qemu"
	"vers/internal/revert"
	"vers/internal/store"
)

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

// Validate checks a spec against the host before anything is built or started.
func (m *Manager) Validate(spec Spec) error {
	if err := ValidateAlias(spec.Alias); err != nil {
		return err
	}
	if _, err := netMode(spec); err != nil {
		return err
	}
	return m.cfg.Host.Check(spec.MemMiB, spec.VCPUs, spec.FsMiB)
}

// netMode is the network a spec asks for.
func netMode(spec Spec) (qemu.NetMode, error) {
	mode, err := qemu.ParseNetMode(spec.Network)
	if err != nil {
		return mode, fmt.Errorf("network mode %q: use %q (outbound connections only) or %q (no network): %w",
			spec.Network, qemu.NetIsolated, qemu.NetNone, errdefs.ErrInvalid)
	}
	return mode, nil
}

// Check is Create's dry run: everything that can be known without building
// or booting anything — the spec, the room on the host, the images (built
// ones are measured as Create would), the alias being free.
func (m *Manager) Check(ctx context.Context, spec Spec) error {
	if err := m.Validate(spec); err != nil {
		return err
	}
	if err := m.admit(ctx, admission{fresh: spec.MemMiB}); err != nil {
		return err
	}
	for _, name := range []string{spec.Kernel, spec.Rootfs} {
		if !slices.Contains(m.cfg.Images.Names(), name) {
			return fmt.Errorf("unknown image %q (known: %s): %w", name, strings.Join(m.cfg.Images.Names(), ", "), errdefs.ErrInvalid)
		}
	}
	kernel, kerr := m.cfg.Images.Get(spec.Kernel)
	rootfs, rerr := m.cfg.Images.Get(spec.Rootfs)
	if kerr == nil && rerr == nil {
		if err := checkImages(spec, kernel, rootfs); err != nil {
			return err
		}
	}
	if spec.Alias != "" {
		if _, err := m.store.ResolveVM(ctx, spec.Alias); err == nil {
			return fmt.Errorf("alias %q is already used by another VM; choose another alias or kill that VM: %w", spec.Alias, errdefs.ErrConflict)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Create boots a VM and returns once its agent answers. It reads as its
// phases: check, images, reserve (the row, with the memory it needs), then
// the disk, the process and the agent, each with its undo.
func (m *Manager) Create(ctx context.Context, spec Spec) (api.VM, error) {
	if err := m.Validate(spec); err != nil {
		return api.VM{}, err
	}
	mode, _ := netMode(spec)
	if err := m.hv.Available(mode); err != nil {
		return api.VM{}, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	kernel, rootfs, err := m.images(ctx, spec)
	if err != nil {
		return api.VM{}, err
	}
	start := time.Now()
	undo := revert.New()
	defer undo.Fail()
	bg := context.WithoutCancel(ctx)

	// The row comes first: it reserves the alias and the memory, and a
	// daemon that dies during the next steps finds a "creating" row and
	// cleans up after it.
	row := store.VM{
		ID: uuid.NewString(), Alias: spec.Alias, State: api.StateCreating,
		MemMiB: spec.MemMiB, VCPUs: spec.VCPUs, FsMiB: spec.FsMiB,
		Kernel: spec.Kernel, Rootfs: spec.Rootfs, CreatedAt: start,
	}
	if err := m.reserve(ctx, admission{fresh: spec.MemMiB}, []store.VM{row}); err != nil {
		return api.VM{}, err
	}
	// A watcher may have seen the creating row in its hello.
	undo.Add(func() { m.store.DeleteVM(bg, row.ID); m.publishKilled(row) })

	cfg, err := m.machineConfig(row, kernel, mode)
	if err != nil {
		return api.VM{}, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return api.VM{}, fmt.Errorf("create vm dir: %w", err)
	}
	undo.Add(func() { os.RemoveAll(cfg.Dir) })
	row.Machine = machineJSON(cfg)
	if err := m.store.UpdateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	if err := m.hv.CreateOverlay(ctx, rootfs.Path, "raw", cfg.Disk, spec.FsMiB); err != nil {
		return api.VM{}, fmt.Errorf("create disk: %w", err)
	}
	if cfg.MemPath != "" {
		undo.Add(func() { os.Remove(cfg.MemPath) })
	}
	mc, err := m.boot(ctx, row, cfg, undo)
	if err != nil {
		return api.VM{}, err
	}
	row.State, row.PID = api.StateRunning, mc.inst.PID()
	row.BootMillis = time.Since(start).Milliseconds()
	if err := m.store.UpdateVM(ctx, row); err != nil {
		return api.VM{}, err
	}
	m.mu.Lock()
	m.live[row.ID] = mc
	m.mu.Unlock()
	undo.Success()
	m.log.Info("vm created", "id", row.ID, "alias", row.Alias, "pid", row.PID, "boot_ms", row.BootMillis)
	m.publishVM(api.EventVMCreated, row, "")
	return m.toAPI(row), nil
}

// boot starts a new VM's process and waits for its agent.
func (m *Manager) boot(ctx context.Context, row store.VM, cfg qemu.Config, undo *revert.Reverter) (*machine, error) {
	if err := m.inject("create.start"); err != nil {
		return nil, err
	}
	inst, err := m.hv.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	m.ownVM(cfg)
	bg := context.WithoutCancel(ctx)
	undo.Add(func() { inst.Stop(bg); m.unplaceVM(row.ID) })
	m.placeVM(row.ID, inst.PID())
	mc := newMachine(inst)
	if err := m.connect(ctx, mc, row, m.cfg.BootTimeout, false); err != nil {
		kept := m.keepConsole(cfg)
		return nil, fmt.Errorf("vm did not come up: %w; console (whole log kept in %s):\n%s", err, kept, cfg.ConsoleTail(1500))
	}
	undo.Add(mc.closeAgent)
	if err := m.inject("create.after-boot"); err != nil {
		return nil, err
	}
	return mc, nil
}

// images finds (building if needed) the kernel and root filesystem of spec.
func (m *Manager) images(ctx context.Context, spec Spec) (kernel, rootfs image.Info, err error) {
	kernel, err = m.cfg.Images.Ensure(ctx, spec.Kernel, nil)
	if err != nil {
		return kernel, rootfs, imageErr("kernel", spec.Kernel, err)
	}
	rootfs, err = m.cfg.Images.Ensure(ctx, spec.Rootfs, nil)
	if err != nil {
		return kernel, rootfs, imageErr("rootfs", spec.Rootfs, err)
	}
	return kernel, rootfs, checkImages(spec, kernel, rootfs)
}

// checkImages checks that a spec's images are of the right kinds and that
// its disk holds the root filesystem.
func checkImages(spec Spec, kernel, rootfs image.Info) error {
	switch {
	case kernel.Kind != image.KindKernel:
		return fmt.Errorf("image %q is a %s, not a kernel: %w", spec.Kernel, kernel.Kind, errdefs.ErrInvalid)
	case rootfs.Kind != image.KindRootfs:
		return fmt.Errorf("image %q is a %s, not a root filesystem: %w", spec.Rootfs, rootfs.Kind, errdefs.ErrInvalid)
	case spec.FsMiB < rootfs.SizeMiB:
		return fmt.Errorf("fs_size_vm_mib %d is smaller than the %q image (%d MiB); use at least %d: %w",
			spec.FsMiB, spec.Rootfs, rootfs.SizeMiB, rootfs.SizeMiB, errdefs.ErrInvalid)
	}
	return nil
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

// machineConfig is the QEMU machine of a new VM.
func (m *Manager) machineConfig(row store.VM, kernel image.Info, network qemu.NetMode) (qemu.Config, error) {
	dir := m.cfg.Layout.VMDir(row.ID)
	c := qemu.Config{
		Name:   row.ID,
		Dir:    dir,
		MemMiB: row.MemMiB,
		VCPUs:  row.VCPUs,
		Kernel: kernel.Path,
		Initrd: kernel.Initrd,
		Disk:   dir + "/disk.qcow2",
		Accel:  m.cfg.Accel,
		// Children are started from this machine: they keep its network.
		Network: network,
	}
	if m.cfg.CloneRAM {
		c.MemPath = m.ownRAM(row.ID)
	}
	c, err := c.WithHostDefaults()
	if err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	return c, nil
}

func machineJSON(c qemu.Config) string {
	b, _ := json.Marshal(c)
	return string(b)
}

// machineOf decodes the QEMU configuration stored with a VM.
func machineOf(v store.VM) (qemu.Config, bool) {
	var cfg qemu.Config
	if v.Machine == "" || json.Unmarshal([]byte(v.Machine), &cfg) != nil {
		return qemu.Config{Name: v.ID}, false
	}
	return cfg, true
}

// keepConsole saves the console log of a VM that is about to be removed
// after a failure, so the reason can still be read.
func (m *Manager) keepConsole(cfg qemu.Config) string {
	dir := m.cfg.Layout.Home + "/failed"
	os.MkdirAll(dir, 0o700)
	dst := dir + "/" + cfg.Name + ".console.log"
	if b, err := cfg.ConsoleLog(); err == nil {
		os.WriteFile(dst, b, 0o600)
	}
	return dst
}
