package vm

import (
	"context"

	"vers/internal/agent"
	"vers/internal/qemu"
	"vers/internal/rampool"
)

// The real implementations of the ports.

var (
	_ Hypervisor  = QEMU{}
	_ Instance    = (*qemu.Instance)(nil)
	_ RAMFiles    = RAMPool{}
	_ AgentDialer = agent.Dial
)

// QEMU is the Hypervisor of internal/qemu.
type QEMU struct{}

func (QEMU) Start(ctx context.Context, cfg qemu.Config) (Instance, error) {
	inst, err := qemu.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return inst, nil
}

func (QEMU) Attach(ctx context.Context, cfg qemu.Config) (Instance, error) {
	inst, err := qemu.Attach(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return inst, nil
}

func (QEMU) Kill(cfg qemu.Config) error { return qemu.Kill(cfg) }

func (QEMU) RotateLogs(cfg qemu.Config) error {
	_, err := qemu.RotateConsole(cfg, qemu.ConsoleCap)
	if _, perr := qemu.RotatePasstLog(cfg, qemu.PasstLogCap); err == nil {
		err = perr
	}
	return err
}

func (QEMU) Available(network qemu.NetMode) error {
	if _, err := qemu.Binary(); err != nil {
		return err
	}
	if network == qemu.NetIsolated {
		_, err := qemu.PasstBinary()
		return err
	}
	return nil
}

func (QEMU) CreateOverlay(ctx context.Context, backing, backingFmt, path string, sizeMiB int) error {
	return qemu.CreateOverlay(ctx, backing, backingFmt, path, sizeMiB)
}

func (QEMU) CreateBlank(ctx context.Context, path string, sizeMiB int) error {
	return qemu.CreateBlank(ctx, path, sizeMiB)
}

func (QEMU) Backing(path string) (string, string, error) { return qemu.Backing(path) }
func (QEMU) Format(path string) (string, error)          { return qemu.Format(path) }
func (QEMU) Rebase(ctx context.Context, path, backing, format string) error {
	return qemu.Rebase(ctx, path, backing, format)
}

// RAMPool is RAMFiles on the RAM filesystem of internal/rampool.
type RAMPool struct{}

func (RAMPool) Clone(src, dst string) error     { return rampool.Clone(src, dst) }
func (RAMPool) CloneOver(src, dst string) error { return rampool.CloneOver(src, dst) }
func (RAMPool) Flush(path string) error         { return rampool.Flush(path) }
func (RAMPool) Own(path, home string) error     { return rampool.Own(path, home) }
func (RAMPool) Mapped(pid int, path string) ([]rampool.Range, error) {
	return rampool.Mapped(pid, path)
}
func (RAMPool) Prefetch(path string, r []rampool.Range) error { return rampool.Prefetch(path, r) }
