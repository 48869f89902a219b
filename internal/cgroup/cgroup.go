// Package cgroup gives each VM's QEMU a control group of its own for block
// I/O, under a "vers" group.
//
// Why: guest RAM files live on a filesystem on a loop device (internal/
// rampool), and the loop driver serves the requests of one control group
// with one kernel thread. With every VM in the same group, the page-ins of
// children started together (a branch with --count) queue behind a single
// thread doing all the copying; with a group per VM, the loop driver gives
// each its own, and they run on every core.
//
// It uses the cgroup v1 blkio hierarchy or, failing that, cgroup v2 with the
// io controller. Everything here is best effort: a host without either, or
// that does not let vers make groups, runs VMs all the same.
package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"vers/internal/poll"

	"github.com/moby/sys/mountinfo"
)

// Group is the parent group of every VM's group.
const Group = "vers"

var (
	once    sync.Once
	base    string // <hierarchy>/vers, "" when none can be used
	baseErr error
)

// root finds (once) the hierarchy to use and makes the vers group in it.
func root() (string, error) {
	once.Do(func() { base, baseErr = setUp(readMounts()) })
	return base, baseErr
}

type mount struct{ fstype, dir, opts string }

func readMounts() []mount {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil
	}
	out := make([]mount, 0, len(infos))
	for _, m := range infos {
		// A v1 hierarchy names its controllers among the superblock options.
		out = append(out, mount{fstype: m.FSType, dir: m.Mountpoint, opts: m.Options + "," + m.VFSOptions})
	}
	return out
}

// hierarchy picks the cgroup v1 blkio hierarchy, else a cgroup v2 one whose
// root offers the io controller. v2 reports whether it is v2.
func hierarchy(mounts []mount) (dir string, v2 bool, err error) {
	for _, m := range mounts {
		if m.fstype == "cgroup" && hasOpt(m.opts, "blkio") {
			return m.dir, false, nil
		}
	}
	for _, m := range mounts {
		if m.fstype != "cgroup2" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(m.dir, "cgroup.controllers")); err == nil && hasWord(string(b), "io") {
			return m.dir, true, nil
		}
	}
	return "", false, errors.New("no cgroup hierarchy with the blkio or io controller")
}

func setUp(mounts []mount) (string, error) {
	dir, v2, err := hierarchy(mounts)
	if err != nil {
		return "", err
	}
	group := filepath.Join(dir, Group)
	if v2 {
		// The io controller must be on for the groups below: at the top
		// (whose own processes the rule on internal processes spares) and in
		// vers, which holds no process itself.
		if err := enableIO(dir); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(group, 0o755); err != nil {
		return "", err
	}
	if v2 {
		if err := enableIO(group); err != nil {
			return "", err
		}
	}
	return group, nil
}

func enableIO(dir string) error {
	ctl := filepath.Join(dir, "cgroup.subtree_control")
	if b, err := os.ReadFile(ctl); err == nil && hasWord(string(b), "io") {
		return nil
	}
	if err := os.WriteFile(ctl, []byte("+io"), 0o644); err != nil {
		return fmt.Errorf("enable the io controller in %s: %w", dir, err)
	}
	return nil
}

func hasOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

func hasWord(s, want string) bool {
	for _, w := range strings.Fields(s) {
		if w == want {
			return true
		}
	}
	return false
}

// Place moves process pid, with all its threads, into the group name of
// its own (made if needed). Call it before the process does I/O that should
// count there.
func Place(name string, pid int) error {
	g, err := root()
	if err != nil {
		return err
	}
	dir := filepath.Join(g, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		os.Remove(dir)
		return fmt.Errorf("move %d into %s: %w", pid, dir, err)
	}
	return nil
}

// Remove deletes the group name once its processes are gone (they may take
// a moment to exit after a kill). It is a no-op for a group that never was.
func Remove(name string) error {
	g, err := root()
	if err != nil {
		return nil
	}
	dir := filepath.Join(g, name)
	// A group empties a moment after its last process exits.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var last error
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		last = os.Remove(dir)
		return last == nil || errors.Is(last, os.ErrNotExist), nil
	}); err != nil {
		return last
	}
	return nil
}
