// Package paths decides where vers keeps its state on the host. Every other
// package asks here instead of building paths itself, so one setting
// (VERS_HOME, read by internal/config) moves a whole installation.
package paths

import (
	"path/filepath"
)

// Layout is the on-disk layout of one vers installation.
type Layout struct {
	Home     string // VERS_HOME: daemon socket, database, VM directories, log
	ImageDir string // VERS_IMAGE_DIR: built kernels and root filesystems (shared cache)
}

func (l Layout) Socket() string   { return filepath.Join(l.Home, "versd.sock") }
func (l Layout) Database() string { return filepath.Join(l.Home, "vers.db") }
func (l Layout) Log() string      { return filepath.Join(l.Home, "versd.log") }
func (l Layout) PIDFile() string  { return filepath.Join(l.Home, "versd.pid") }

// Token holds the bearer token versd asks of API requests over TCP
// (--listen); the unix socket needs none.
func (l Layout) Token() string { return filepath.Join(l.Home, "versd.token") }

// MCPToken holds the bearer token `vers mcp serve --http` asks of its
// clients, by default.
func (l Layout) MCPToken() string { return filepath.Join(l.Home, "mcp.token") }

// StartLock is held by the CLI that starts or restarts versd, so that of
// many CLIs finding no daemon at once, one starts it and the others wait.
func (l Layout) StartLock() string { return filepath.Join(l.Home, "versd.start.lock") }
func (l Layout) VMsDir() string    { return filepath.Join(l.Home, "vms") }

// VMDir holds everything one VM owns: its disk overlay, sockets, logs.
func (l Layout) VMDir(id string) string { return filepath.Join(l.Home, "vms", id) }

// ChunksDir is the chunk store commits are kept in (internal/chunk).
func (l Layout) ChunksDir() string { return filepath.Join(l.Home, "chunks") }

// SnapshotsDir holds immutable snapshots (disk layers, memory, device state).
func (l Layout) SnapshotsDir() string { return filepath.Join(l.Home, "snapshots") }
