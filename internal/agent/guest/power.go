package guest

import (
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// HandlePowerSignals powers the VM off when PID 1 is asked to stop: SIGTERM
// (kill 1), SIGINT (Ctrl-Alt-Del, which the kernel then delivers to init),
// SIGPWR, and SIGRTMIN+4 (34+4 on Linux) / SIGUSR2 as systemd and busybox
// use for poweroff.
func HandlePowerSignals(logf func(string, ...any)) {
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGPWR, unix.SIGUSR2, unix.Signal(34+4))
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE, unix.SIGTTIN, unix.SIGTTOU)
	sig := <-ch
	logf("%v: powering off", sig)
	PowerOff(logf)
}

// PowerOff stops every process, flushes and remounts the root read-only, and
// powers off. It does not return.
func PowerOff(logf func(string, ...any)) {
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && othersAlive() {
		time.Sleep(50 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logf("remount / read-only: %v", err)
	}
	unix.Sync()
	for {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		time.Sleep(time.Second)
	}
}

// othersAlive reports whether any process but PID 1 and kernel threads remains.
func othersAlive() bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() == "1" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		// Kernel threads have an empty command line.
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			return true
		}
	}
	return false
}
