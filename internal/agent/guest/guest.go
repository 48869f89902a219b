// Package guest is the PID 1 side of vers-agent that is not the protocol:
// bringing a VM from the kernel's hand-off to a running Debian userland
// (initramfs stage: modules, root device, switch root; rootfs stage: mounts,
// filesystem growth, network, hostname, power-off). It only ever runs inside
// a guest; nothing here may be called on a host, where it would remount,
// reconfigure or power off the machine.
package guest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Stage is which job the binary has been started for.
type Stage int

const (
	// StageDev: not PID 1; serve a socket or stdio for tests, touch nothing.
	StageDev Stage = iota
	// StageInitramfs: PID 1 on the initramfs; find the root and switch to it.
	StageInitramfs
	// StageRootfs: PID 1 on the real root filesystem.
	StageRootfs
)

// LoadOrder lists, in the initramfs, the module files to load in order.
const LoadOrder = "/lib/modules/load-order"

// DetectStage decides the stage: PID 1 whose root is the kernel's in-memory
// rootfs (ramfs or tmpfs) and which carries a module load order is the
// initramfs; any other PID 1 is the real root.
func DetectStage() Stage {
	if os.Getpid() != 1 {
		return StageDev
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil && (st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC) {
		if _, err := os.Stat(LoadOrder); err == nil {
			return StageInitramfs
		}
	}
	return StageRootfs
}

// Cmdline holds the vers.* parameters of the kernel command line.
type Cmdline map[string]string

// ParseCmdline reads key=value words; bare words get an empty value. Later
// words win, as with the kernel's own parameters.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	for _, w := range strings.Fields(s) {
		k, v, _ := strings.Cut(w, "=")
		c[k] = strings.Trim(v, `"`)
	}
	return c
}

// ReadCmdline parses /proc/cmdline (empty if it cannot be read).
func ReadCmdline() Cmdline {
	b, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(b))
}

// Get returns the value of key or def when it is missing or empty.
func (c Cmdline) Get(key, def string) string {
	if v := c[key]; v != "" {
		return v
	}
	return def
}

// Logger writes timestamped lines to the console, so the host's serial log
// shows how the guest came up.
type Logger struct {
	mu sync.Mutex
	f  *os.File
	t0 time.Time
}

// NewConsoleLogger opens /dev/console, falling back to stderr.
func NewConsoleLogger() *Logger {
	f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		f = os.Stderr
	}
	return &Logger{f: f, t0: time.Now()}
}

// Logf writes one line.
func (l *Logger) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, "vers-agent[%d]: %s\n", os.Getpid(), fmt.Sprintf(format, args...))
}
