package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RootAgent is the agent's path in the root filesystem, executed as the new PID 1.
const RootAgent = "/sbin/vers-agent"

const newRoot = "/newroot"

// RunInitramfs loads the modules, mounts the root device and replaces the
// process with the root filesystem's agent. It returns only on failure.
func RunInitramfs(logf func(string, ...any)) error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	cmd := ReadCmdline()
	loadModules(logf, "/lib/modules")
	dev := cmd.Get("vers.root", "/dev/vda")
	if err := waitFor(dev, 10*time.Second); err != nil {
		return err
	}
	os.MkdirAll(newRoot, 0o755)
	fstype := cmd.Get("vers.rootfstype", "ext4")
	if err := unix.Mount(dev, newRoot, fstype, 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, newRoot, err)
	}
	if _, err := os.Stat(newRoot + RootAgent); err != nil {
		return fmt.Errorf("root filesystem on %s has no agent: %w", dev, err)
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		os.MkdirAll(newRoot+d, 0o755)
		if err := unix.Mount(d, newRoot+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	freeInitramfs(logf)
	if err := switchRoot(newRoot); err != nil {
		return err
	}
	logf("switched root to %s", dev)
	return nil
}

// loadModules loads the modules named in dir/load-order, in that order.
// Failures are logged: a missing module shows up as a missing device later.
func loadModules(logf func(string, ...any), dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "load-order"))
	if err != nil {
		logf("no module list: %v", err)
		return
	}
	for _, name := range moduleList(string(b)) {
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			logf("load module %s: %v", name, err)
		}
	}
}

// moduleList reads a load-order file: one file name a line, # comments.
func moduleList(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// waitFor waits for a device node to appear (devtmpfs creates it when the
// driver finds the disk).
func waitFor(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freeInitramfs deletes the initramfs files (it cannot be unmounted) so
// their memory goes back to the guest. Mounted directories are skipped.
func freeInitramfs(logf func(string, ...any)) {
	var root unix.Stat_t
	if err := unix.Stat("/", &root); err != nil {
		return
	}
	ents, err := os.ReadDir("/")
	if err != nil {
		return
	}
	for _, e := range ents {
		removeSameDev(filepath.Join("/", e.Name()), root.Dev)
	}
}

func removeSameDev(path string, dev uint64) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Dev != dev {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		ents, _ := os.ReadDir(path)
		for _, e := range ents {
			removeSameDev(filepath.Join(path, e.Name()), dev)
		}
		unix.Rmdir(path)
		return
	}
	unix.Unlink(path)
}

// switchRoot makes dir the root: the initramfs cannot be pivoted away from,
// so the new root is moved over / and chrooted into.
func switchRoot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return nil
}
