package vm

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"vers/internal/errdefs"
	"vers/internal/hostmem"
)

// HostLimits is what this host can give VMs.
type HostLimits struct {
	MemMiB  int // total RAM
	CPUs    int
	DiskMiB int // free space where VM disks live
	// Available is the memory the host can give now, in MiB (nil: unknown).
	Available func() int
	diskDir   string
	// freeDisk, when set (tests), measures the free disk space instead.
	freeDisk func() int
}

// ReadHostLimits measures the host. dir is where VM disks are written.
func ReadHostLimits(dir string) HostLimits {
	h := HostLimits{CPUs: runtime.NumCPU(), diskDir: dir}
	if total, err := hostmem.Total(); err == nil {
		h.MemMiB = int(total >> 20)
		h.Available = func() int {
			n, err := hostmem.Available()
			if err != nil {
				return h.MemMiB
			}
			return int(n >> 20)
		}
	}
	return h
}

// FreeDiskMiB is the free space where VM disks live.
func (h HostLimits) FreeDiskMiB() int {
	if h.freeDisk != nil {
		return h.freeDisk()
	}
	dir := h.diskDir
	for dir != "/" && dir != "." {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil {
			return int(st.Bavail * uint64(st.Bsize) >> 20)
		}
		dir = parent(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return 0
	}
	return int(st.Bavail * uint64(st.Bsize) >> 20)
}

func parent(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// Check validates a VM's size against the host.
func (h HostLimits) Check(memMiB, vcpus, fsMiB int) error {
	switch {
	case memMiB <= 0:
		return fmt.Errorf("mem_size_mib must be a positive number of MiB, got %d: %w", memMiB, errdefs.ErrInvalid)
	case vcpus <= 0:
		return fmt.Errorf("vcpu_count must be at least 1, got %d: %w", vcpus, errdefs.ErrInvalid)
	case fsMiB <= 0:
		return fmt.Errorf("fs_size_vm_mib must be a positive number of MiB, got %d: %w", fsMiB, errdefs.ErrInvalid)
	case memMiB < 128:
		return fmt.Errorf("mem_size_mib %d is too small to boot; use at least 128: %w", memMiB, errdefs.ErrInvalid)
	case h.MemMiB > 0 && memMiB > h.MemMiB:
		return fmt.Errorf("mem_size_mib %d is more than this host has (%d MiB): %w", memMiB, h.MemMiB, errdefs.ErrInvalid)
	case h.CPUs > 0 && vcpus > h.CPUs:
		return fmt.Errorf("vcpu_count %d is more than this host has (%d): %w", vcpus, h.CPUs, errdefs.ErrInvalid)
	}
	// Disks are thin qcow2 overlays, but a size the host could never hold is a mistake.
	if free := h.FreeDiskMiB(); free > 0 && fsMiB > free {
		return fmt.Errorf("fs_size_vm_mib %d is more than the free disk space on this host (%d MiB): %w", fsMiB, free, errdefs.ErrInvalid)
	}
	return nil
}
