package qemu

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
)

// DetectAccel returns "kvm" only when the CPU has hardware virtualization (vmx
// or svm in /proc/cpuinfo) and /dev/kvm opens read-write; otherwise "tcg".
// (versd's VERS_ACCEL overrides it, for hosts whose /dev/kvm exists but does
// not run a stock kernel.)
func DetectAccel() string {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !hasVirtFlag(info) {
		return "tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
}

// hasVirtFlag reports whether a /proc/cpuinfo "flags" line lists vmx or svm.
func hasVirtFlag(cpuinfo []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}

// HostTSCkHz returns the host's TSC frequency in kHz. Guests see the host TSC
// (under TCG as under KVM), so this is what they must be told. It prefers the
// kernel's own figure (sysfs tsc_freq_khz, where the kernel exposes it) and
// falls back to "cpu MHz" in /proc/cpuinfo, which the kernel reports from its
// TSC calibration on constant_tsc CPUs.
func HostTSCkHz() (int, error) {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n, nil
		}
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("host tsc frequency: %w", err)
	}
	if n := cpuinfoKHz(info); n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("host tsc frequency: no \"cpu MHz\" in /proc/cpuinfo")
}

// cpuinfoKHz parses the first "cpu MHz" line of /proc/cpuinfo into kHz.
func cpuinfoKHz(cpuinfo []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(math.Round(mhz * 1000))
	}
	return 0
}

// Tools are the QEMU binaries to use; an empty one is found in PATH.
type Tools struct {
	QEMU string // VERS_QEMU
	Img  string // VERS_QEMU_IMG
}

var tools atomic.Pointer[Tools]

// UseTools sets the QEMU binaries, once, from the daemon's configuration.
func UseTools(t Tools) { tools.Store(&t) }

func currentTools() Tools {
	if t := tools.Load(); t != nil {
		return *t
	}
	return Tools{}
}

// Binary returns the QEMU system emulator: the one UseTools gave, else
// qemu-system-x86_64 from PATH.
func Binary() (string, error) {
	return findTool(currentTools().QEMU, "VERS_QEMU", "qemu-system-x86_64", "qemu-system-x86")
}

// ImgBinary returns qemu-img: the one UseTools gave, else from PATH.
func ImgBinary() (string, error) {
	return findTool(currentTools().Img, "VERS_QEMU_IMG", "qemu-img", "qemu-utils")
}

func findTool(given, env, name, pkg string) (string, error) {
	if p := given; p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s is not an executable: %v", ErrQEMUMissing, env, p, err)
		}
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found in PATH; install it (apt-get install %s) or set %s",
			ErrQEMUMissing, name, pkg, env)
	}
	return p, nil
}

// WithHostDefaults fills the fields that depend on this host and are left
// zero: Accel (DetectAccel) and TSCkHz (HostTSCkHz, when a kernel is set).
// Store the result: a restarted or branched VM must reuse the same values.
func (c Config) WithHostDefaults() (Config, error) {
	if c.Accel == "" {
		c.Accel = DetectAccel()
	}
	if c.TSCkHz == 0 && c.Kernel != "" {
		khz, err := HostTSCkHz()
		if err != nil {
			return c, err
		}
		c.TSCkHz = khz
	}
	return c, nil
}
