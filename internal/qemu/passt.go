package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPasstMissing: passt, which isolated VMs need, is not installed.
var ErrPasstMissing = errors.New("passt is not installed")

// netFD is the descriptor the network socket has in QEMU and in passt: the
// first one after stdin, stdout and stderr (exec.Cmd.ExtraFiles[0]).
const netFD = 3

// The guest's addresses, which the agent configures statically
// (internal/agent/guest.DefaultNet; a test keeps them equal): those QEMU's
// user networking used, so images made for it keep working.
const (
	guestAddr    = "10.0.2.15"
	guestPrefix  = 24
	guestGateway = "10.0.2.2"
	guestDNS     = "10.0.2.3"
)

// passtReady bounds how long passt may take to set itself up (~20 ms here).
const passtReady = 10 * time.Second

// PasstPIDFile names the VM's passt: "PID START", START being the process'
// start time (see procStart). passt cannot be told a path of ours to mark
// its command line with: Debian's AppArmor profile for it allows writes only
// under /tmp and $HOME.
func (c Config) PasstPIDFile() string { return filepath.Join(c.Dir, "passt.pid") }

// PasstLog receives passt's messages (its standard error).
func (c Config) PasstLog() string { return filepath.Join(c.Dir, "passt.log") }

// PasstBinary returns passt from PATH.
func PasstBinary() (string, error) {
	p, err := exec.LookPath("passt")
	if err != nil {
		return "", fmt.Errorf(`%w: passt not found in PATH; install it (apt-get install passt), or give the VM no network ([network] mode = "none")`, ErrPasstMissing)
	}
	return p, nil
}

// passtArgs is passt's command line, without the binary, for cfg's VM. It
// does no I/O.
func passtArgs(cfg Config) []string {
	return []string{
		"--foreground", "--quiet",
		"--fd", strconv.Itoa(netFD),
		"--ipv4-only",
		"--address", guestAddr, "--netmask", strconv.Itoa(guestPrefix), "--gateway", guestGateway,
		"--no-map-gw",
		"--dns-forward", guestDNS,
		"--tcp-ports", "none", "--udp-ports", "none",
		// The agent configures the guest statically: nothing to lease.
		"--no-dhcp",
	}
}

// procID names one process for ever: a PID may be reused, a PID with the
// same start time is the same process.
type procID struct {
	pid   int
	start uint64 // /proc/PID/stat field 22: clock ticks from boot to its start
}

func (id procID) String() string { return fmt.Sprintf("%d %d\n", id.pid, id.start) }

func parseProcID(b []byte) (procID, bool) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return procID{}, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	return procID{pid, start}, err1 == nil && err2 == nil && pid > 0
}

// statStart is the start time in a /proc/PID/stat.
func statStart(stat []byte) (uint64, bool) {
	// The fields follow the last ')' (the command name may contain one);
	// the state, field 3, comes first.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

// procStart identifies the live process pid.
func procStart(pid int) (procID, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil || !Alive(pid) {
		return procID{}, false
	}
	start, ok := statStart(b)
	return procID{pid, start}, ok
}

// running reports whether the process id names still runs.
func (id procID) running() bool {
	now, ok := procStart(id.pid)
	return ok && now == id
}

// PasstPIDOf returns the PID of cfg's running passt, found through its
// pidfile and verified by its start time, or ErrNotRunning.
func PasstPIDOf(cfg Config) (int, error) {
	id, err := passtOf(cfg)
	return id.pid, err
}

func passtOf(cfg Config) (procID, error) {
	b, err := os.ReadFile(cfg.PasstPIDFile())
	if errors.Is(err, fs.ErrNotExist) {
		return procID{}, fmt.Errorf("passt of vm %s: %w (no pidfile)", cfg.Name, ErrNotRunning)
	}
	if err != nil {
		return procID{}, fmt.Errorf("passt of vm %s: %w", cfg.Name, err)
	}
	id, ok := parseProcID(b)
	if !ok || !id.running() {
		return procID{}, fmt.Errorf("passt of vm %s: %w (pidfile %q names no running process)", cfg.Name, ErrNotRunning, bytes.TrimSpace(b))
	}
	return id, nil
}

// startPasst starts cfg's passt and returns, once passt is ready, the end of
// the socket pair that QEMU gets as descriptor netFD. On failure no passt
// is left running.
func startPasst(ctx context.Context, cfg Config) (*os.File, error) {
	bin, err := PasstBinary()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network socket pair: %w", err)
	}
	qemuEnd, passtEnd := os.NewFile(uintptr(fds[0]), "net-qemu"), os.NewFile(uintptr(fds[1]), "net-passt")
	defer passtEnd.Close()
	// Its standard error, not a --log-file: under AppArmor an inherited
	// descriptor passt may not write is replaced by a null one, a log file
	// it opens itself fails its start.
	log, err := os.OpenFile(cfg.PasstLog(), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		qemuEnd.Close()
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, passtArgs(cfg)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{passtEnd}
	// A session of its own: nothing sent to the caller's process group or
	// terminal reaches it, and it outlives the caller as QEMU does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		qemuEnd.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	// It is our child while we live: reap it whenever it exits.
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	fail := func(err error) (*os.File, error) {
		qemuEnd.Close()
		cmd.Process.Kill()
		<-exited
		os.Remove(cfg.PasstPIDFile())
		if tail := fileTail(cfg.PasstLog(), 1024); tail != "" {
			err = fmt.Errorf("%w; passt log ends with: %s", err, tail)
		}
		return nil, fmt.Errorf("passt: %w", err)
	}
	id, ok := procStart(cmd.Process.Pid)
	if !ok {
		return fail(errors.New("exited at once"))
	}
	if err := writePIDFile(cfg.PasstPIDFile(), id); err != nil {
		return fail(err)
	}
	if err := waitSandboxed(ctx, cmd.Process.Pid, exited); err != nil {
		return fail(err)
	}
	return qemuEnd, nil
}

// writePIDFile writes id to path atomically: a reader sees no pidfile or a
// whole one.
func writePIDFile(path string, id procID) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitSandboxed waits until passt is ready: it enters its seccomp sandbox
// once it has parsed its options and set up its sockets, just before it
// starts forwarding. It fails if passt exits first, ctx ends or passtReady
// passes.
func waitSandboxed(ctx context.Context, pid int, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, passtReady)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	status := "/proc/" + strconv.Itoa(pid) + "/status"
	for {
		b, err := os.ReadFile(status)
		if err == nil {
			if mode, ok := seccompMode(b); !ok || mode != 0 {
				// A kernel without the field cannot tell: take it as ready.
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited while starting")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// seccompMode is the "Seccomp:" field of a /proc/PID/status (0: none, 2:
// filter), and whether there is one.
func seccompMode(status []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Seccomp:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

// killPasst kills cfg's passt if its pidfile names one, waits for it to
// exit and removes the pidfile. It is not an error if none runs.
func killPasst(cfg Config) error {
	id, err := passtOf(cfg)
	if errors.Is(err, ErrNotRunning) {
		os.Remove(cfg.PasstPIDFile())
		return nil
	}
	if err != nil {
		return err
	}
	fd, err := unix.PidfdOpen(id.pid, 0)
	if err != nil {
		fd = -1
	}
	p := &process{pid: id.pid, pidfd: fd}
	defer p.release()
	if !id.running() { // exited between the check and the pidfd
		os.Remove(cfg.PasstPIDFile())
		return nil
	}
	// It holds nothing worth a graceful end.
	if err := p.terminate(context.Background(), unix.SIGKILL); err != nil {
		return fmt.Errorf("passt of vm %s: %w", cfg.Name, err)
	}
	os.Remove(cfg.PasstPIDFile())
	return nil
}
