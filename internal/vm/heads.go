package vm

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/store"
)

// SetHead records which VM the HEAD of the project directory dir names
// ("" forgets dir), so that an operation that kills VMs can tell whose
// HEAD it would take away. The directory is the CLI's; versd never reads it.
func (m *Manager) SetHead(ctx context.Context, dir, ref string) (api.Head, error) {
	if dir == "" || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return api.Head{}, fmt.Errorf("the project directory %q is not a clean absolute path: %w", dir, errdefs.ErrInvalid)
	}
	h := store.Head{Dir: dir, UpdatedAt: time.Now().UTC()}
	if ref != "" {
		row, err := m.store.ResolveVM(ctx, ref)
		if err != nil {
			return api.Head{}, err
		}
		h.VMID = row.ID
	}
	if err := m.store.SetHead(ctx, h); err != nil {
		return api.Head{}, err
	}
	m.publish(api.Event{Type: api.EventHeadMoved, VMID: h.VMID, Dir: dir})
	return api.Head{Dir: h.Dir, VMID: h.VMID, UpdatedAt: h.UpdatedAt}, nil
}

// Heads returns the project directories whose HEAD names a VM that exists.
func (m *Manager) Heads(ctx context.Context) ([]api.Head, error) {
	rows, err := m.store.ListHeads(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Head, 0, len(rows))
	for _, h := range rows {
		out = append(out, api.Head{Dir: h.Dir, VMID: h.VMID, UpdatedAt: h.UpdatedAt})
	}
	return out, nil
}
