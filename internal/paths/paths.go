// Package paths decides where vers keeps its state on the host. Every other
// package asks here instead of building paths itself, so one environment
// variable moves a whole installation (the tests give each run its own).
package paths

import (
	"os"
	"path/filepath"
)

// Layout is the on-disk layout of one vers installation.
type Layout struct {
	Home     string // VERS_HOME: daemon socket, database, VM directories, log
	ImageDir string // VERS_IMAGE_DIR: built kernels and root filesystems (shared cache)
}

// Default reads VERS_HOME and VERS_IMAGE_DIR, falling back to /var/lib/vers.
func Default() Layout {
	home := os.Getenv("VERS_HOME")
	if home == "" {
		home = "/var/lib/vers"
	}
	images := os.Getenv("VERS_IMAGE_DIR")
	if images == "" {
		images = filepath.Join(home, "images")
	}
	return Layout{Home: home, ImageDir: images}
}

func (l Layout) Socket() string   { return filepath.Join(l.Home, "versd.sock") }
func (l Layout) Database() string { return filepath.Join(l.Home, "vers.db") }
func (l Layout) Log() string      { return filepath.Join(l.Home, "versd.log") }
func (l Layout) PIDFile() string  { return filepath.Join(l.Home, "versd.pid") }

// StartLock is held by the CLI that starts or restarts versd, so that of
// many CLIs finding no daemon at once, one starts it and the others wait.
func (l Layout) StartLock() string { return filepath.Join(l.Home, "versd.start.lock") }
func (l Layout) VMsDir() string    { return filepath.Join(l.Home, "vms") }

// VMDir holds everything one VM owns: its disk overlay, sockets, logs.
func (l Layout) VMDir(id string) string { return filepath.Join(l.Home, "vms", id) }

// SnapshotsDir holds immutable snapshots (disk layers, memory, device state).
func (l Layout) SnapshotsDir() string { return filepath.Join(l.Home, "snapshots") }

// RAMDir holds guest RAM files (VERS_RAM_DIR, default /dev/shm/vers): each
// running VM's own RAM, and the frozen RAM of snapshots.
func RAMDir() string {
	if d := os.Getenv("VERS_RAM_DIR"); d != "" {
		return d
	}
	return "/dev/shm/vers"
}

// RAMPoolDir is where the in-memory filesystem that the default RAMDir is
// mounted from keeps its image (see internal/rampool), or "" when the daemon
// must not mount one: with VERS_RAM_POOL=off, or a RAM directory of one's own
// (VERS_RAM_DIR), which is used as it is. One filesystem, one mount point.
func RAMPoolDir() string {
	if os.Getenv("VERS_RAM_POOL") == "off" || os.Getenv("VERS_RAM_DIR") != "" {
		return ""
	}
	return "/run/vers/pool"
}

// AgentBinary finds the vers-agent binary that images embed: VERS_AGENT, or
// the file next to the running executable.
func AgentBinary() (string, error) {
	if p := os.Getenv("VERS_AGENT"); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(exe), "vers-agent"), nil
}
