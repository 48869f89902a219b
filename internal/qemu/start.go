package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Start launches cfg's QEMU and returns once its QMP connection is up. The
// QEMU outlives the caller (see the package comment). On any failure nothing
// is left running, and the error carries the end of QEMU's own output.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start vm %s: %w", cfg.Name, err)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if pid, err := PIDOf(cfg); err == nil {
		return nil, fmt.Errorf("start vm %s: %w (pid %d)", cfg.Name, ErrRunning, pid)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start vm %s: %w", cfg.Name, err)
	}
	removeRuntimeFiles(cfg)  // leftovers of a QEMU that died without cleaning up
	killPasst(cfg)           // and of a start that died before its QEMU ran
	os.Remove(cfg.QEMULog()) // so a failure reports this run's messages only

	// The network comes first: QEMU connects its device to it as it starts.
	var net *os.File
	if cfg.Network.isolated() {
		if net, err = startPasst(ctx, cfg); err != nil {
			return nil, fmt.Errorf("start vm %s: %w", cfg.Name, err)
		}
	}
	inst, err := launch(ctx, bin, cfg, net)
	if net != nil {
		net.Close() // QEMU has its own copy, or failed
	}
	if err != nil {
		// Whatever got as far as writing a pidfile goes, verified as ours,
		// and the passt with it.
		Kill(cfg)
		removeRuntimeFiles(cfg)
		return nil, fmt.Errorf("start vm %s: %w", cfg.Name, err)
	}
	inst.netPID, _ = PasstPIDOf(cfg)
	return inst, nil
}

// launch runs QEMU until it has daemonized; net, if not nil, becomes its
// descriptor netFD.
func launch(ctx context.Context, bin string, cfg Config, net *os.File) (*Instance, error) {
	out := &tailBuffer{max: 4096}
	cmd := exec.Command(bin, cfg.Args()...)
	cmd.Stdout, cmd.Stderr = out, out
	if net != nil {
		cmd.ExtraFiles = []*os.File{net}
	}
	// Own process group: a signal to the caller's group (Ctrl-C on a
	// foreground daemon) must not hit QEMU while it is still starting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The daemonized QEMU closes its copy of stderr when it is ready; if it
	// never does (we killed its parent), stop waiting for output soon.
	cmd.WaitDelay = time.Second
	start := cmd.Start
	if hugePagesHurt(cfg) {
		start = func() error { return startFiltered(cmd, noHugePages) }
	}
	if err := start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			return nil, fmt.Errorf("qemu failed (%v): %s", err, startOutput(out, cfg))
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		<-waited
		return nil, ctx.Err()
	}

	proc, err := openVerified(cfg)
	if err != nil {
		return nil, fmt.Errorf("qemu reported success but %w: %s", err, startOutput(out, cfg))
	}
	mon, err := dialMonitor(ctx, cfg.QMPSocket())
	if err != nil {
		proc.release()
		if tail := fileTail(cfg.QEMULog(), 2048); tail != "" {
			err = fmt.Errorf("%w; qemu log ends with: %s", err, tail)
		}
		if tail := fileTail(cfg.SerialLog(), 2048); tail != "" {
			err = fmt.Errorf("%w; guest console ends with: %s", err, tail)
		}
		return nil, err
	}
	return &Instance{cfg: cfg, pid: proc.pid, proc: proc, mon: mon, lastMon: mon}, nil
}

// Attach connects to cfg's running QEMU, as a restarted daemon does. It
// returns ErrNotRunning if the pidfile is missing or names a process that is
// gone or is not this VM's QEMU.
func Attach(ctx context.Context, cfg Config) (*Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	proc, err := openVerified(cfg)
	if err != nil {
		return nil, err
	}
	mon, err := dialMonitor(ctx, cfg.QMPSocket())
	if err != nil {
		proc.release()
		if !isVMProcess(proc.pid, cfg) {
			return nil, fmt.Errorf("attach vm %s: %w (exited)", cfg.Name, ErrNotRunning)
		}
		return nil, fmt.Errorf("attach vm %s: %w", cfg.Name, err)
	}
	// Its passt is found by pidfile too. A VM whose passt is gone runs on
	// without a network; Stop and Kill end whichever passt there is.
	netPID, _ := PasstPIDOf(cfg)
	return &Instance{cfg: cfg, pid: proc.pid, proc: proc, mon: mon, lastMon: mon, netPID: netPID}, nil
}

// startOutput is what QEMU said while starting: errors found while parsing
// options go to stderr, later ones to its log file.
func startOutput(out *tailBuffer, cfg Config) string {
	msgs := []string{}
	if s := out.String(); s != "" {
		msgs = append(msgs, s)
	}
	if s := fileTail(cfg.QEMULog(), 4096); s != "" {
		msgs = append(msgs, s)
	}
	if len(msgs) == 0 {
		return "no output"
	}
	return strings.Join(msgs, "\n")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// fileTail returns up to the last n bytes of a file, trimmed; "" if unreadable.
func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return strings.TrimSpace(string(b))
}
