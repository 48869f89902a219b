package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/qemu"
	"vers/internal/store"
)

// Info is VM ref and what it uses on the host now: its QEMU's memory, its
// RAM file, its own disk layer and chain, its last pause. The figures are
// read from the host as they are; one that cannot be read is left zero.
func (m *Manager) Info(ctx context.Context, ref string) (api.VMInfo, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return api.VMInfo{}, err
	}
	kids, err := m.store.Children(ctx, row.ID)
	if err != nil {
		return api.VMInfo{}, err
	}
	info := api.VMInfo{VM: m.toAPI(row), Children: make([]string, 0, len(kids)), Accel: m.cfg.Accel}
	for _, k := range kids {
		info.Children = append(info.Children, k.ID)
	}
	cfg, pid := m.currentMachine(row)
	if cfg.Accel != "" {
		info.Accel = cfg.Accel
	}
	info.Network = string(qemu.NetIsolated)
	if cfg.Network != "" {
		info.Network = string(cfg.Network)
	}
	if pid > 0 {
		info.Memory.PSSBytes, _ = m.readPSS(pid)
	}
	if cfg.MemPath != "" {
		info.Memory.RAMFile, info.Memory.RAMFileShared = cfg.MemPath, cfg.MemPrivate
		info.Memory.RAMFileBytes = allocated(cfg.MemPath)
	}
	if cfg.Disk != "" {
		info.Disk.Overlay, info.Disk.OverlayBytes = cfg.Disk, allocated(cfg.Disk)
		if chain, err := m.diskChain(cfg.Disk); err == nil {
			info.Disk.ChainLength = len(chain)
		}
	}
	if p, ok := m.pauses.Load(row.ID); ok {
		rec := p.(api.PauseRecord)
		info.LastPause = &rec
	}
	if row.State == api.StateRunning {
		info.Clock = m.clockOffset(ctx, row.ID)
	}
	if b, ok := m.branches.Load(row.ID); ok {
		rec := b.(api.BranchRecord)
		info.LastBranch = &rec
	}
	return info, nil
}

// clockInfoTimeout bounds the agent round trip of a VM's clock reading:
// info must answer even when the guest does not.
const clockInfoTimeout = 5 * time.Second

// clockOffset reads VM id's guest clock through its agent, or nil.
func (m *Manager) clockOffset(ctx context.Context, id string) *api.ClockOffset {
	ctx, cancel := context.WithTimeout(ctx, clockInfoTimeout)
	defer cancel()
	c, _, _, err := m.session(ctx, id)
	if err != nil {
		return nil
	}
	r, _, err := readClock(ctx, c)
	if err != nil {
		return nil
	}
	return &r
}

// currentMachine is the machine row runs as now (the running process's
// configuration, which follows its disk across branches) and its process,
// or the recorded one and 0 when it has no process.
func (m *Manager) currentMachine(row store.VM) (qemu.Config, int) {
	if mc := m.machine(row.ID); mc != nil && !mc.inst.Exited() {
		return mc.inst.Config(), mc.inst.PID()
	}
	cfg, _ := machineOf(row)
	return cfg, 0
}

// notePause records the pause a branch or commit of VM id made. It is kept
// in memory only: a restarted versd knows no pause until the next one.
func (m *Manager) notePause(id, op string, pause time.Duration) {
	m.pauses.Store(id, api.PauseRecord{Op: op, PauseMillis: float64(pause.Microseconds()) / 1000, At: time.Now()})
}

// noteBranch records the figures of a branch, in memory as notePause.
func (m *Manager) noteBranch(res BranchResult) {
	rec := api.BranchRecord{
		Children:         make([]string, 0, len(res.Children)),
		PauseMillis:      float64(res.Pause.Microseconds()) / 1000,
		FirstReadyMillis: res.FirstReady.Milliseconds(), AllReadyMillis: res.AllReady.Milliseconds(),
		At: time.Now(),
	}
	for _, k := range res.Children {
		rec.Children = append(rec.Children, k.ID)
	}
	m.branches.Store(res.Parent.ID, rec)
}

// ConsoleMax bounds what Console returns.
const ConsoleMax = 1 << 20

// Console is the last n bytes (1 to ConsoleMax) of VM ref's console log:
// what its kernel and init wrote to the serial port.
func (m *Manager) Console(ctx context.Context, ref string, n int64) ([]byte, error) {
	if n <= 0 || n > ConsoleMax {
		return nil, fmt.Errorf("%d bytes of the console: give 1 to %d: %w", n, ConsoleMax, errdefs.ErrInvalid)
	}
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return nil, err
	}
	cfg, _ := m.currentMachine(row)
	if cfg.Dir == "" {
		return nil, fmt.Errorf("vm %s has no console log on this host: %w", label(row), errdefs.ErrNotFound)
	}
	b, err := cfg.ConsoleEnd(n)
	if err != nil {
		return nil, fmt.Errorf("console log of vm %s: %w", label(row), err)
	}
	return b, nil
}

func (m *Manager) readPSS(pid int) (int64, error) {
	if m.pss != nil {
		return m.pss(pid)
	}
	return procPSS(pid)
}

// procPSS is process pid's proportional set size, from the kernel's sum of
// its mappings (/proc/PID/smaps_rollup).
func procPSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	return parsePSS(b)
}

// parsePSS reads the "Pss:" line of smaps_rollup, in kB, as bytes.
func parsePSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Pss:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("smaps_rollup: Pss %q: %w", f[0], err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("smaps_rollup has no Pss line")
}

// allocated is the bytes the filesystem has allocated to path (holes and
// blocks shared by reflink with other files as the file system counts them);
// 0 when it cannot be read.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
