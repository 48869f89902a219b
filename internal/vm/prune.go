package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
)

// Pruner is the image cache's clean-up, as the manager needs it.
type Pruner interface {
	Prune(ctx context.Context, inUse func(path string) bool) ([]string, error)
}

// PruneImages deletes image builds that nothing uses any more: every
// rebuild (a new agent, a new recipe) leaves the old build behind, and a
// root filesystem build is a few hundred MiB. A build is in use while any
// process on the host has one of its files open (QEMU keeps a VM's whole
// disk chain open, the root filesystem at its bottom) or names it on its
// command line (QEMU reads -kernel and -initrd at start and closes them, but
// a branch starts children with the same command line). Current builds are
// never deleted.
func (m *Manager) PruneImages(ctx context.Context, images Pruner) {
	used := hostFilesInUse()
	removed, err := images.Prune(ctx, func(path string) bool { return used[path] })
	if err != nil {
		m.log.Warn("prune images", "err", err)
	}
	for _, d := range removed {
		m.log.Info("removed unused image build", "dir", d)
	}
}

// hostFilesInUse lists the files open in any process, and every absolute
// path on any process' command line.
func hostFilesInUse() map[string]bool {
	used := map[string]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && strings.HasPrefix(target, "/") {
				used[strings.TrimSuffix(target, " (deleted)")] = true
			}
		}
		if cmd, err := os.ReadFile(filepath.Join(p, "cmdline")); err == nil {
			for _, arg := range strings.Split(string(cmd), "\x00") {
				for _, part := range strings.FieldsFunc(arg, func(r rune) bool { return r == ',' || r == '=' }) {
					if strings.HasPrefix(part, "/") {
						used[part] = true
					}
				}
			}
		}
	}
	return used
}
