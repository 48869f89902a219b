package qemu

// An isolated VM's network is a passt process of its own (Debian's passt,
// QEMU's "-netdev stream"): passt turns the guest's frames into ordinary
// sockets of the host, so the guest connects out as any host program does.
// It is chosen over QEMU's user networking (slirp), which maps 10.0.2.2 to
// the host's 127.0.0.1 and so lets a guest reach every host loopback service.
// passt is run with --no-map-gw (the gateway is not the host), no port
// forwarded in either direction, IPv4 only, and DNS sent to 10.0.2.3
// forwarded to the host's resolver. Each VM, each branch child included, has
// its own passt: guests share nothing, and since each guest's address is its
// own passt's, no guest can address another.
//
// QEMU and passt share a socket pair, not a socket path: passt drops to user
// nobody before it binds or writes anything, so its socket would have to live
// in a directory nobody can write, where any process running as nobody could
// connect to it. With a pair nothing on the host leads to a VM's network, and
// passt exits by itself the moment QEMU's end closes (--fd implies
// --one-off), however QEMU ended. passt runs in the foreground in a session
// of its own; its PID goes into passt.pid in the VM directory, where Kill,
// Stop and a restarted daemon find it, verified by its command line (which
// names the VM directory's passt.log).

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
// (internal/agent/guest.DefaultNet; a test keeps them equal). They are
// slirp's, so guests see the same network whatever runs behind it.
const (
	guestAddr    = "10.0.2.15"
	guestPrefix  = 24
	guestGateway = "10.0.2.2"
	guestDNS     = "10.0.2.3"
)

// passtReady bounds how long passt may take to set itself up (~20 ms here).
const passtReady = 10 * time.Second

func (c Config) PasstPIDFile() string { return filepath.Join(c.Dir, "passt.pid") }

// PasstLog receives passt's messages; passt truncates it when it starts.
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
		"--log-file", cfg.PasstLog(),
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

// passtCmdlineMatches reports whether argv is the passt of cfg's VM: it
// logs to that VM directory's passt.log, which no other VM's passt does.
func passtCmdlineMatches(argv []string, cfg Config) bool {
	if len(argv) == 0 || !strings.HasPrefix(filepath.Base(argv[0]), "passt") {
		return false
	}
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "--log-file" && argv[i+1] == cfg.PasstLog() {
			return true
		}
	}
	return false
}

func isPasstOf(pid int, cfg Config) bool {
	if !Alive(pid) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return passtCmdlineMatches(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), cfg)
}

// PasstPIDOf returns the PID of cfg's running passt, found through its
// pidfile and verified against its command line, or ErrNotRunning.
func PasstPIDOf(cfg Config) (int, error) {
	b, err := os.ReadFile(cfg.PasstPIDFile())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("passt of vm %s: %w (no pidfile)", cfg.Name, ErrNotRunning)
	}
	if err != nil {
		return 0, fmt.Errorf("passt of vm %s: %w", cfg.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !isPasstOf(pid, cfg) {
		return 0, fmt.Errorf("passt of vm %s: %w (pidfile %q names no passt of it)", cfg.Name, ErrNotRunning, bytes.TrimSpace(b))
	}
	return pid, nil
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
	// passt's messages before it opens its log (a bad option) go to its
	// stderr: the same file.
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
	if err := writePIDFile(cfg.PasstPIDFile(), cmd.Process.Pid); err != nil {
		return fail(err)
	}
	if err := waitSandboxed(ctx, cmd.Process.Pid, exited); err != nil {
		return fail(err)
	}
	return qemuEnd, nil
}

// writePIDFile writes pid to path atomically: a reader sees no pidfile or a
// whole one.
func writePIDFile(path string, pid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
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
	pid, err := PasstPIDOf(cfg)
	if errors.Is(err, ErrNotRunning) {
		os.Remove(cfg.PasstPIDFile())
		return nil
	}
	if err != nil {
		return err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fd = -1
	}
	p := &process{pid: pid, pidfd: fd}
	defer p.release()
	if !isPasstOf(pid, cfg) { // exited between the check and the pidfd
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
