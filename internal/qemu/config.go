package qemu

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var (
	// ErrInvalid: a Config or an argument cannot describe a working VM.
	ErrInvalid = errors.New("invalid qemu configuration")
	// ErrNotRunning: no QEMU of this VM is running.
	ErrNotRunning = errors.New("vm is not running")
	// ErrRunning: a QEMU of this VM is already running.
	ErrRunning = errors.New("vm is already running")
	// ErrQEMUMissing: qemu-system-x86_64 or qemu-img is not installed.
	ErrQEMUMissing = errors.New("qemu is not installed")
)

// AgentPortName is the virtio-serial port name the guest agent opens
// (/dev/virtio-ports/vers.agent in the guest).
const AgentPortName = "vers.agent"

// RootNode is the block node name of the root disk, for QMP block commands.
const RootNode = "root"

// Config describes one VM's QEMU. The same Config always yields the same
// command line, so a branch child can be started as an identical machine.
type Config struct {
	Name    string // VM id, used in -name and to recognise the process
	Dir     string // VM directory: sockets, pidfile and serial log live here (absolute)
	MemMiB  int
	VCPUs   int
	Kernel  string // uncompressed PVH vmlinux (ELF); empty boots nothing (tests)
	Initrd  string // optional initramfs
	Cmdline string // extra kernel command-line args, appended after the driver's own
	Disk    string // optional root disk, qcow2 (virtio-blk on virtio-mmio, node-name "root")
	Accel   string // "kvm" or "tcg"
	// TSCkHz is the host TSC frequency (HostTSCkHz), passed as tsc_early_khz:
	// microvm has no PIT/HPET to calibrate against, and without it some boots
	// hang. Required when Kernel is set; stored, so restarts stay identical.
	TSCkHz int
	// MemPath, if set, backs guest RAM with memory-backend-file mem-path=MemPath
	// (share=on: the file is the RAM); otherwise RAM is anonymous. A migration
	// target must use the same kind of RAM as its source (the RAM block is
	// named after the backend), so a child of a MemPath VM needs a MemPath.
	MemPath string
	// MemPrivate maps MemPath share=off: the guest sees the file's contents but
	// its writes stay private to this QEMU (copy-on-write), the file never changes.
	MemPrivate bool
	Incoming   bool // start paused waiting for migration: -incoming defer
	// StateConfig: the state this VM loads begins with QEMU's
	// configuration section, as a state written by a migration does (vers
	// wrote such states before SaveState saved device state alone), and so
	// does every migration it sends. A state SaveState writes has no such
	// section, and QEMU loads it only with the section turned off: it is
	// off unless this is set (StateHasConfig tells which a file is).
	StateConfig bool `json:",omitempty"`
	// Frozen keeps the guest stopped after an incoming migration (-S): QEMU
	// would otherwise resume a VM whose source was running.
	Frozen bool
	// Network is how the guest reaches the network; the zero value is
	// NetIsolated. A migration target needs its source's network device, so
	// a branch child keeps its parent's mode.
	Network NetMode
}

// NetMode is how a VM reaches the network (see passt.go).
type NetMode string

const (
	// NetIsolated, also the zero value: outbound connections only, through a
	// passt process of the VM's own that maps no address to the host and
	// forwards no port. No host loopback service and no other guest is
	// reachable.
	NetIsolated NetMode = "isolated"
	// NetNone: no network device at all.
	NetNone NetMode = "none"
	// NetUnplugged: NetIsolated's network device with nothing behind it, for
	// a QEMU that never runs its guest (a branch's snapshot holder). A
	// migration matches the device, not what is behind it.
	NetUnplugged NetMode = "unplugged"
)

// ParseNetMode reads a network mode as a user gives it: "isolated" (or
// empty) or "none".
func ParseNetMode(s string) (NetMode, error) {
	switch m := NetMode(s); m {
	case "", NetIsolated:
		return NetIsolated, nil
	case NetNone:
		return NetNone, nil
	}
	return "", fmt.Errorf("network mode %q: use %q or %q: %w", s, NetIsolated, NetNone, ErrInvalid)
}

// Unplugged is the mode of a QEMU with the same devices as one of mode n
// whose guest never runs: nothing on the host behind its network device.
func (n NetMode) Unplugged() NetMode {
	if n == NetNone {
		return NetNone
	}
	return NetUnplugged
}

// isolated reports whether the mode needs a passt process.
func (n NetMode) isolated() bool { return n == "" || n == NetIsolated }

func (c Config) QMPSocket() string   { return filepath.Join(c.Dir, "qmp.sock") }
func (c Config) AgentSocket() string { return filepath.Join(c.Dir, "agent.sock") }
func (c Config) PIDFile() string     { return filepath.Join(c.Dir, "qemu.pid") }
func (c Config) SerialLog() string   { return filepath.Join(c.Dir, "serial.log") }

// QEMULog receives QEMU's own messages (-D): startup errors, and once it has
// daemonized everything it would print on stderr, such as a failed incoming
// migration. QEMU truncates it when it starts.
func (c Config) QEMULog() string { return filepath.Join(c.Dir, "qemu.log") }

// maxSocketPath is the longest path a unix socket address can hold (sun_path
// is 108 bytes including the terminating NUL).
const maxSocketPath = 107

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports the first reason c cannot work, wrapping ErrInvalid.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case !nameRE.MatchString(c.Name):
		return bad("name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return bad("dir %q must be an absolute path (qemu -daemonize changes to /)", c.Dir)
	case len(c.QMPSocket()) > maxSocketPath || len(c.AgentSocket()) > maxSocketPath:
		return bad("dir %q is too long for a unix socket path (max %d bytes); use a shorter VERS_HOME", c.Dir, maxSocketPath)
	case c.MemMiB < 16:
		return bad("memory %d MiB: at least 16 MiB", c.MemMiB)
	case c.VCPUs < 1 || c.VCPUs > 64:
		return bad("vcpus %d: must be 1-64", c.VCPUs)
	case c.Accel != "kvm" && c.Accel != "tcg":
		return bad("accel %q: must be kvm or tcg", c.Accel)
	case c.Kernel == "" && (c.Initrd != "" || c.Cmdline != ""):
		return bad("initrd or kernel command line given without a kernel")
	case c.Kernel != "" && c.TSCkHz <= 0:
		return bad("tsc kHz not set: microvm guests need tsc_early_khz (see HostTSCkHz)")
	case c.MemPrivate && c.MemPath == "":
		return bad("private memory needs a memory file")
	case strings.ContainsAny(c.Cmdline, "\"\n\x00"):
		return bad("kernel command line must not contain quotes, newlines or NUL")
	case !c.Network.isolated() && c.Network != NetNone && c.Network != NetUnplugged:
		return bad("network %q: must be %s, %s or %s", c.Network, NetIsolated, NetNone, NetUnplugged)
	}
	for _, p := range []struct{ what, path string }{
		{"kernel", c.Kernel}, {"initrd", c.Initrd}, {"disk", c.Disk}, {"memory file", c.MemPath},
	} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return bad("%s %q must be an absolute path", p.what, p.path)
		}
	}
	return nil
}

// KernelCmdline is the full guest kernel command line: the driver's part,
// which the machine needs, then c.Cmdline. Deterministic for a given Config.
func (c Config) KernelCmdline() string {
	parts := []string{"console=ttyS0", "reboot=t", "panic=-1"}
	if c.TSCkHz > 0 {
		parts = append(parts, "tsc_early_khz="+strconv.Itoa(c.TSCkHz), "tsc=reliable")
	}
	if s := strings.TrimSpace(c.Cmdline); s != "" {
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// Args is the full QEMU command line without the binary. It does no I/O.
// Device ids and order are fixed: a migration target must have the same
// devices, created in the same order, as its source.
func (c Config) Args() []string {
	mem := strconv.Itoa(c.MemMiB) + "M"
	machine := "microvm"
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-name", c.Name,
	}
	// RAM is always a named backend ("mem"), anonymous or a file, so that any
	// VM can migrate into any other kind: a RAM block is matched by name.
	machine += ",memory-backend=mem"
	memObj := []string{"-object", "memory-backend-ram,id=mem,size=" + mem}
	if c.MemPath != "" {
		share := "on"
		if c.MemPrivate {
			share = "off"
		}
		memObj = []string{"-object", "memory-backend-file,id=mem,size=" + mem +
			",mem-path=" + optEscape(c.MemPath) + ",share=" + share}
	}
	a = append(a, "-machine", machine, "-accel", c.Accel)
	if c.Accel == "kvm" {
		a = append(a, "-cpu", "host")
	} else {
		a = append(a, "-cpu", "max")
	}
	a = append(a, "-smp", strconv.Itoa(c.VCPUs), "-m", mem)
	a = append(a, memObj...)
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		a = append(a, "-append", c.KernelCmdline())
	}
	a = append(a,
		"-chardev", "socket,id=qmp,path="+optEscape(c.QMPSocket())+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "file,id=console,path="+optEscape(c.SerialLog())+",append=on",
		"-serial", "chardev:console",
	)
	if c.Disk != "" {
		a = append(a,
			"-blockdev", "driver=qcow2,node-name="+RootNode+",discard=unmap,file.driver=file,file.filename="+optEscape(c.Disk),
			"-device", "virtio-blk-device,drive="+RootNode+",id=disk0",
		)
	}
	a = append(a, c.netArgs()...)
	a = append(a,
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng0,id=rngdev0",
		"-device", "virtio-serial-device,id=vser0",
		"-chardev", "socket,id=agent,path="+optEscape(c.AgentSocket())+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+AgentPortName+",id=agent0",
		"-D", c.QEMULog(),
		"-pidfile", c.PIDFile(),
		"-daemonize",
	)
	if c.Frozen {
		a = append(a, "-S")
	}
	if !c.StateConfig {
		a = append(a, "-global", "migration.send-configuration=off")
	}
	if c.Incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}

// netArgs is the network device and what is behind it. An isolated VM's
// is one end of a socket pair whose other end is its passt (see passt.go),
// inherited as descriptor netFD: no path on the host leads to it.
func (c Config) netArgs() []string {
	nic := []string{"-device", "virtio-net-device,netdev=net0,id=nic0"}
	switch {
	case c.Network == NetNone:
		return nil
	case c.Network == NetUnplugged:
		// A hub with no other port: frames go nowhere.
		return append([]string{"-netdev", "hubport,id=net0,hubid=0"}, nic...)
	}
	return append([]string{"-netdev", "stream,id=net0,server=off,addr.type=fd,addr.str=" + strconv.Itoa(netFD)}, nic...)
}

// optEscape escapes a value for QEMU's key=value,... option syntax, where a
// literal comma is written twice.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
