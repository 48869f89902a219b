package store

import (
	"context"
	"time"
)

// Head is one project directory's HEAD as the CLI last set it.
type Head struct {
	Dir       string
	VMID      string
	UpdatedAt time.Time
}

// SetHead records dir's HEAD; an empty VMID forgets dir.
func (s *Store) SetHead(ctx context.Context, h Head) error {
	if h.VMID == "" {
		_, err := s.db.ExecContext(ctx, `DELETE FROM heads WHERE dir=?`, h.Dir)
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO heads (dir, vm_id, updated_at) VALUES (?,?,?)
		ON CONFLICT(dir) DO UPDATE SET vm_id=excluded.vm_id, updated_at=excluded.updated_at`,
		h.Dir, h.VMID, h.UpdatedAt.UnixNano())
	return err
}

// ListHeads returns the heads that name a VM that still has a row, by
// directory; the others are forgotten.
func (s *Store) ListHeads(ctx context.Context) ([]Head, error) {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM heads WHERE vm_id NOT IN (SELECT id FROM vms)`); err != nil {
		return nil, err
	}
	return queryAll(ctx, s.db, `SELECT dir, vm_id, updated_at FROM heads ORDER BY dir`,
		func(r interface{ Scan(...any) error }) (Head, error) {
			var h Head
			var ns int64
			err := r.Scan(&h.Dir, &h.VMID, &ns)
			h.UpdatedAt = time.Unix(0, ns).UTC()
			return h, err
		})
}
