package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	quitGrace = 5 * time.Second // from quit (or SIGTERM) to SIGKILL
	killWait  = 5 * time.Second // from SIGKILL to giving up
)

// Alive reports whether pid names a live process (a zombie is not alive: a
// daemonized QEMU is reaped by init, which may be slow to do it).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the last ')' (the command name may contain one).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// isVMProcess reports whether pid is the QEMU of cfg: its command line has
// the same -name and -pidfile. Those two together are unique to one VM
// directory, so a reused PID is never taken for the VM.
func isVMProcess(pid int, cfg Config) bool {
	if !Alive(pid) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return cmdlineMatches(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), cfg)
}

func cmdlineMatches(argv []string, cfg Config) bool {
	var name, pidfile bool
	for i := 1; i+1 < len(argv); i++ {
		switch argv[i] {
		case "-name":
			name = argv[i+1] == cfg.Name
		case "-pidfile":
			pidfile = argv[i+1] == cfg.PIDFile()
		}
	}
	return name && pidfile
}

// PIDOf returns the PID of cfg's running QEMU, found through the pidfile and
// verified against the process' command line, or ErrNotRunning.
func PIDOf(cfg Config) (int, error) {
	b, err := os.ReadFile(cfg.PIDFile())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("vm %s: %w (no pidfile)", cfg.Name, ErrNotRunning)
	}
	if err != nil {
		return 0, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("vm %s: %w (bad pidfile %q)", cfg.Name, ErrNotRunning, b)
	}
	if !isVMProcess(pid, cfg) {
		return 0, fmt.Errorf("vm %s: %w (pid %d is gone or not its qemu)", cfg.Name, ErrNotRunning, pid)
	}
	return pid, nil
}

// process is a handle on a QEMU we did not fork. With a pidfd, signals and
// waits are bound to that very process even if its PID is reused later.
type process struct {
	pid   int
	pidfd int // -1 where pidfd_open is not available
}

// openVerified opens a handle on cfg's QEMU, verifying the command line again
// after the pidfd is open so the handle cannot refer to a reused PID.
func openVerified(cfg Config) (*process, error) {
	pid, err := PIDOf(cfg)
	if err != nil {
		return nil, err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fd = -1
	}
	p := &process{pid: pid, pidfd: fd}
	if !isVMProcess(pid, cfg) {
		p.release()
		return nil, fmt.Errorf("vm %s: %w (pid %d exited)", cfg.Name, ErrNotRunning, pid)
	}
	return p, nil
}

func (p *process) signal(sig unix.Signal) error {
	var err error
	if p.pidfd >= 0 {
		err = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	} else {
		err = unix.Kill(p.pid, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func (p *process) exited() bool {
	if p.pidfd >= 0 {
		fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0
	}
	return !Alive(p.pid)
}

// wait waits until the process has exited, for at most d or until ctx ends.
func (p *process) wait(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if p.exited() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if p.pidfd >= 0 {
			fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
			unix.Poll(fds, 20)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// terminate asks with sig (0: the caller already asked), then kills.
func (p *process) terminate(ctx context.Context, sig unix.Signal) error {
	if sig != 0 {
		if err := p.signal(sig); err != nil {
			return fmt.Errorf("signal qemu pid %d: %w", p.pid, err)
		}
	}
	if sig != unix.SIGKILL && p.wait(ctx, quitGrace) {
		return nil
	}
	if err := p.signal(unix.SIGKILL); err != nil {
		return fmt.Errorf("kill qemu pid %d: %w", p.pid, err)
	}
	// Wait for the kill even if ctx has ended: returning early would let a
	// caller reuse files the dying QEMU still holds.
	if !p.wait(context.WithoutCancel(ctx), killWait) {
		return fmt.Errorf("qemu pid %d did not exit after SIGKILL", p.pid)
	}
	return nil
}

func (p *process) release() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// removeRuntimeFiles removes what a running QEMU owns in the VM directory
// (the serial log stays: it is the VM's history).
func removeRuntimeFiles(cfg Config) {
	for _, p := range []string{cfg.QMPSocket(), cfg.AgentSocket(), cfg.PIDFile()} {
		os.Remove(p)
	}
}

// Kill kills cfg's QEMU, if the pidfile names one, without QMP (for when QMP
// is unreachable), waits for it to exit and removes its sockets and pidfile;
// then the same for its passt, if one is left. It is not an error if
// nothing is running. Only Name and Dir of cfg are needed.
func Kill(cfg Config) error {
	p, err := openVerified(cfg)
	if errors.Is(err, ErrNotRunning) {
		removeRuntimeFiles(cfg)
		return killPasst(cfg)
	}
	if err != nil {
		return err
	}
	defer p.release()
	if err := p.terminate(context.Background(), unix.SIGKILL); err != nil {
		return fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	removeRuntimeFiles(cfg)
	return killPasst(cfg)
}

// Instance is a running QEMU with a QMP connection. Its methods are safe for
// concurrent use.
type Instance struct {
	cfg    Config
	pid    int
	proc   *process
	netPID int // its passt when it was started or attached; 0: none

	mu      sync.Mutex
	mon     *monitor // nil after Close or Stop
	lastMon *monitor // the monitor it had, for the events it saw
	closed  bool     // Close released proc's pidfd
	stopped bool
}

func (i *Instance) PID() int { return i.pid }

// NetPID is the PID of the VM's passt as found when the Instance was
// started or attached; 0 if it had none.
func (i *Instance) NetPID() int { return i.netPID }
func (i *Instance) Config() Config {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cfg
}

// SetConfig records a change QMP made to the running machine (its disk moved
// to a new overlay), so the Config describes the process as it now is.
func (i *Instance) SetConfig(c Config) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.cfg = c
}

func (i *Instance) monitor() (*monitor, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.mon == nil {
		return nil, fmt.Errorf("vm %s: %w", i.cfg.Name, ErrDisconnected)
	}
	return i.mon, nil
}

// Execute runs a QMP command with args (marshalled to JSON; nil for none) and
// decodes its "return" into result (nil to ignore it). A QEMU error is a *QMPError.
func (i *Instance) Execute(ctx context.Context, cmd string, args any, result any) error {
	m, err := i.monitor()
	if err != nil {
		return err
	}
	return m.execute(ctx, cmd, args, nil, result)
}

// ExecuteWithFile is Execute with f's descriptor passed along (getfd, add-fd).
func (i *Instance) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File, result any) error {
	if f == nil {
		return fmt.Errorf("qmp %s: %w: no file", cmd, ErrInvalid)
	}
	m, err := i.monitor()
	if err != nil {
		return err
	}
	return m.execute(ctx, cmd, args, f, result)
}

// Status is query-status' "status": running, paused, inmigrate, postmigrate,
// finish-migrate, shutdown, ...
func (i *Instance) Status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := i.Execute(ctx, "query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Exited reports whether the QEMU process has exited (the guest powered off,
// crashed, or someone killed it).
func (i *Instance) Exited() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stopped || i.proc.exited()
}

// ShutdownReason is why the guest ended, as QEMU announced it
// ("guest-reset" for a reboot, "guest-shutdown" for a power-off,
// "guest-panic"…), or "" if it did not say (killed, or still running).
func (i *Instance) ShutdownReason() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.lastMon == nil {
		return ""
	}
	r, _ := i.lastMon.shutdown.Load().(string)
	return r
}

// Close drops the QMP connection; the VM keeps running and can be found
// again with Attach.
func (i *Instance) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	var err error
	if i.mon != nil {
		err = i.mon.close()
		i.mon = nil
	}
	i.proc.release()
	i.closed = true
	return err
}

// Stop quits QEMU through QMP (SIGTERM without a QMP connection), waits for
// it to exit, SIGKILLs it after a short grace period, then removes its
// sockets and pidfile. Stopping a stopped Instance does nothing.
func (i *Instance) Stop(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return nil
	}
	if i.closed {
		// The handle is gone: find the process again, verified, by pidfile.
		p, err := openVerified(i.cfg)
		if errors.Is(err, ErrNotRunning) {
			removeRuntimeFiles(i.cfg)
			i.stopped = true
			return killPasst(i.cfg)
		}
		if err != nil {
			return fmt.Errorf("stop vm %s: %w", i.cfg.Name, err)
		}
		i.proc = p
		i.closed = false
	}
	sig := unix.SIGTERM
	if i.mon != nil && !i.proc.exited() {
		qctx, cancel := context.WithTimeout(ctx, quitGrace)
		err := i.mon.execute(qctx, "quit", nil, nil, nil)
		cancel()
		// QEMU may close the socket before its reply arrives.
		if err == nil || errors.Is(err, ErrDisconnected) {
			sig = 0
		}
	}
	if err := i.proc.terminate(ctx, sig); err != nil {
		return fmt.Errorf("stop vm %s: %w", i.cfg.Name, err)
	}
	if i.mon != nil {
		i.mon.close()
		i.mon = nil
	}
	i.proc.release()
	removeRuntimeFiles(i.cfg)
	i.stopped = true
	// passt exits by itself once QEMU's end of their socket closes; one
	// that has not yet is killed.
	return killPasst(i.cfg)
}
