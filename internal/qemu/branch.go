package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"vers/internal/poll"
)

// The QMP steps a branch is made of. Each is one small operation on one
// QEMU; internal/vm composes them and owns the order, timing and undo.

// ErrMigration: a migration failed or was cancelled; the message says why.
var ErrMigration = errors.New("migration failed")

// Migration is what query-migrate reports.
type Migration struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	SetupTime int64  `json:"setup-time"`
	RAM       struct {
		Transferred int64 `json:"transferred"`
		Total       int64 `json:"total"`
		Remaining   int64 `json:"remaining"`
		Duplicate   int64 `json:"duplicate"`
		Normal      int64 `json:"normal"`
		DirtyRate   int64 `json:"dirty-pages-rate"`
		Iterations  int64 `json:"dirty-sync-count"`
	} `json:"ram"`
}

// SetMigration sets migration capabilities and parameters (either may be nil).
func (i *Instance) SetMigration(ctx context.Context, caps map[string]bool, params map[string]any) error {
	if len(caps) > 0 {
		list := make([]map[string]any, 0, len(caps))
		for name, on := range caps {
			list = append(list, map[string]any{"capability": name, "state": on})
		}
		if err := i.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": list}, nil); err != nil {
			return fmt.Errorf("migrate-set-capabilities: %w", err)
		}
	}
	if len(params) > 0 {
		if err := i.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
			return fmt.Errorf("migrate-set-parameters: %w", err)
		}
	}
	return nil
}

// QueryMigration returns the state of the current or last migration.
func (i *Instance) QueryMigration(ctx context.Context) (Migration, error) {
	var m Migration
	err := i.Execute(ctx, "query-migrate", nil, &m)
	return m, err
}

// WaitMigration polls query-migrate every `every` until done(status) holds,
// and fails at once if the migration failed or was cancelled.
func (i *Instance) WaitMigration(ctx context.Context, every time.Duration, done func(status string) bool) (Migration, error) {
	var m Migration
	err := poll.Until(ctx, every, func() (bool, error) {
		var err error
		if m, err = i.QueryMigration(ctx); err != nil {
			return false, err
		}
		switch {
		case done(m.Status):
			return true, nil
		case m.Status == "failed" || m.Status == "cancelled":
			return false, fmt.Errorf("vm %s: %w: %s %s", i.cfg.Name, ErrMigration, m.Status, m.ErrorDesc)
		}
		return false, nil
	})
	return m, err
}

// WaitStatus polls query-status until it is one of want.
func (i *Instance) WaitStatus(ctx context.Context, every time.Duration, want ...string) (string, error) {
	var st string
	err := poll.Until(ctx, every, func() (bool, error) {
		var err error
		if st, err = i.Status(ctx); err != nil {
			return false, err
		}
		switch {
		case slices.Contains(want, st):
			return true, nil
		case st == "internal-error" || st == "shutdown" || st == "guest-panicked":
			return false, fmt.Errorf("vm %s is in state %q: %w", i.cfg.Name, st, ErrMigration)
		}
		return false, nil
	})
	return st, err
}

// TopNode is the node name of the block node the root disk device writes to
// (it changes each time the disk is switched to a new overlay).
func (i *Instance) TopNode(ctx context.Context) (string, error) {
	node, _, err := i.rootDisk(ctx)
	return node, err
}

// ActiveDisk is the image file the root disk device writes to now.
func (i *Instance) ActiveDisk(ctx context.Context) (string, error) {
	_, file, err := i.rootDisk(ctx)
	if err != nil {
		return "", err
	}
	return imageFile(file)
}

// imageFile extracts the top image's file from a block node's filename,
// which QEMU writes as a "json:{...}" pseudo-filename when the node's
// backing was attached at run time rather than read from the image.
func imageFile(name string) (string, error) {
	spec, ok := strings.CutPrefix(name, "json:")
	if !ok {
		return name, nil
	}
	var node struct {
		File struct {
			Filename string `json:"filename"`
		} `json:"file"`
	}
	if err := json.Unmarshal([]byte(spec), &node); err != nil || node.File.Filename == "" {
		return "", fmt.Errorf("cannot read the disk file from %q", name)
	}
	return node.File.Filename, nil
}

func (i *Instance) rootDisk(ctx context.Context) (node, file string, err error) {
	var blocks []struct {
		QDev     string `json:"qdev"`
		Inserted *struct {
			NodeName string `json:"node-name"`
			File     string `json:"file"`
		} `json:"inserted"`
	}
	if err := i.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return "", "", err
	}
	for _, b := range blocks {
		if b.Inserted != nil && strings.Contains(b.QDev, "disk0") {
			return b.Inserted.NodeName, b.Inserted.File, nil
		}
	}
	return "", "", fmt.Errorf("vm %s: no root disk in query-block", i.cfg.Name)
}

// AddOverlay opens the qcow2 file overlay (created beforehand, its backing
// file being the current top's image) as a block node of its own, not yet
// in use, and returns the node the root disk writes to now: SwitchDisk then
// makes the one the other's overlay. It is done while the guest runs, so
// that the pause holds one QMP command of the switch instead of three.
func (i *Instance) AddOverlay(ctx context.Context, overlay, nodeName string) (top string, err error) {
	top, err = i.TopNode(ctx)
	if err != nil {
		return "", err
	}
	add := map[string]any{
		"driver":    "qcow2",
		"node-name": nodeName,
		"discard":   "unmap",
		"file":      map[string]any{"driver": "file", "filename": overlay},
		"backing":   nil,
	}
	if err := i.Execute(ctx, "blockdev-add", add, nil); err != nil {
		return "", fmt.Errorf("blockdev-add %s: %w", overlay, err)
	}
	return top, nil
}

// DropOverlay closes a node AddOverlay opened that no switch used.
func (i *Instance) DropOverlay(ctx context.Context, nodeName string) error {
	return i.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName}, nil)
}

// SwitchDisk makes the node AddOverlay opened the root disk's new active
// layer, top (the layer it wrote to) becoming its read-only backing. The
// guest must be paused.
func (i *Instance) SwitchDisk(ctx context.Context, top, nodeName string) error {
	if err := i.Execute(ctx, "blockdev-snapshot", map[string]any{"node": top, "overlay": nodeName}, nil); err != nil {
		return fmt.Errorf("blockdev-snapshot %s onto %s: %w", top, nodeName, err)
	}
	return nil
}

// SaveState writes this (paused) VM's device state, without RAM, into the
// file at path (xen-save-devices-state): one synchronous command, where a
// migration to a file takes a thread, polling for its end, and leaves the
// disks deactivated, which the next cont opens again (3–11 ms of a
// branch's pause). The VM stays paused, its disks in use. The state has no
// configuration section: it loads into a VM whose StateConfig is off.
func (i *Instance) SaveState(ctx context.Context, path string) error {
	// QEMU creates the file 0660; made here first, it keeps 0600.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	// live=false: QEMU would otherwise deactivate the disks of a stopped VM
	// after the save, as for a migration to another host.
	if err := i.Execute(ctx, "xen-save-devices-state", map[string]any{"filename": path, "live": false}, nil); err != nil {
		return fmt.Errorf("save device state: %w", err)
	}
	return nil
}

// StateHasConfig says whether the state file at path begins with QEMU's
// configuration section (a migration's stream, not SaveState's): the
// stream's magic and version, then the section type 7. A file that cannot
// be read has none: it is one SaveState is yet to write.
func StateHasConfig(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 9)
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return string(head[:4]) == "QEVM" && head[8] == stateConfigSection
}

// stateConfigSection is QEMU_VM_CONFIGURATION, the section type of the
// configuration section in a migration stream.
const stateConfigSection = 0x07

// LoadState feeds the state file at path to a VM started with Incoming and
// waits until it has loaded it (the VM is then paused; cont runs it).
func (i *Instance) LoadState(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := i.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "vers-load"}, f, nil); err != nil {
		return fmt.Errorf("getfd: %w", err)
	}
	if err := i.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:vers-load"}, nil); err != nil {
		return fmt.Errorf("migrate-incoming: %w", err)
	}
	if _, err := i.WaitStatus(ctx, time.Millisecond, "paused", "postmigrate", "running"); err != nil {
		return fmt.Errorf("load state: %w (see %s)", err, i.cfg.QEMULog())
	}
	return nil
}
