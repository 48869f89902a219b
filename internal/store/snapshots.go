package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"vers/internal/errdefs"
)

// Snapshot is an immutable frozen state of a VM: its disk layer, its RAM
// file and its device state. It lives while anything refers to it.
type Snapshot struct {
	ID        string
	SourceVM  string
	CreatedAt time.Time
	Dir       string // holds the layer and the device state
	Layer     string // qcow2 disk layer (immutable)
	MemPath   string // frozen RAM file, mapped copy-on-write by children
	StatePath string // device state (migration stream without RAM)
	Machine   string // the source's machine configuration (opaque JSON)
	// Phase is how far the branch that made it got (Phase*).
	Phase string
	// NextDisk is the overlay the source moves onto in the freeze.
	NextDisk string
	// CommitID is the commit whose state this snapshot brought out of the
	// chunk store (it has no source VM then).
	CommitID string
}

// Branch phases, as recorded with the snapshot.
const (
	// PhasePrepared: recorded before the freeze; the source may or may not
	// have moved onto NextDisk.
	PhasePrepared = "prepared"
	// PhaseFrozen: the source runs on NextDisk; the children may not run.
	PhaseFrozen = "frozen"
	// PhaseReady: the children run (or the branch ended).
	PhaseReady = "ready"
)

const snapshotColumns = `id, source_vm, created_at, dir, layer, mem_path, state_path, machine, phase, next_disk, commit_id`

func scanSnapshot(row interface{ Scan(...any) error }, extra ...any) (Snapshot, error) {
	var sn Snapshot
	var created int64
	dst := append([]any{&sn.ID, &sn.SourceVM, &created, &sn.Dir, &sn.Layer, &sn.MemPath, &sn.StatePath, &sn.Machine, &sn.Phase, &sn.NextDisk, &sn.CommitID}, extra...)
	err := row.Scan(dst...)
	sn.CreatedAt = time.Unix(0, created).UTC()
	return sn, err
}

// Reference kinds. A VM whose disk chain passes through a snapshot's layer
// holds a RefDisk on it; a VM started from a snapshot also holds RefMem,
// since its RAM maps the snapshot's RAM file.
const (
	RefDisk = "disk"
	RefMem  = "mem"
)

// Ref says that a VM uses a snapshot.
type Ref struct {
	VMID, SnapshotID, Kind string
}

// Tx is a store transaction.
type Tx struct{ tx *sql.Tx }

// Update runs f in one transaction: every change in it happens, or none.
func (s *Store) Update(ctx context.Context, f func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(&Tx{tx: tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// CreateSnapshot records sn.
func (t *Tx) CreateSnapshot(ctx context.Context, sn Snapshot) error {
	if sn.Phase == "" {
		sn.Phase = PhaseReady
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO snapshots (`+snapshotColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		sn.ID, sn.SourceVM, sn.CreatedAt.UnixNano(), sn.Dir, sn.Layer, sn.MemPath, sn.StatePath, sn.Machine, sn.Phase, sn.NextDisk, sn.CommitID)
	if err != nil {
		return fmt.Errorf("create snapshot %s: %w", sn.ID, err)
	}
	return nil
}

// AddRef records that vmID uses snapshotID as kind (idempotent).
func (t *Tx) AddRef(ctx context.Context, r Ref) error {
	_, err := t.tx.ExecContext(ctx, `INSERT OR IGNORE INTO refs (vm_id, snapshot_id, kind) VALUES (?,?,?)`, r.VMID, r.SnapshotID, r.Kind)
	return err
}

// CopyDiskRefs gives dst every disk reference src has: a child's disk chain
// passes through every layer its parent's does.
func (t *Tx) CopyDiskRefs(ctx context.Context, src, dst string) error {
	_, err := t.tx.ExecContext(ctx, `INSERT OR IGNORE INTO refs (vm_id, snapshot_id, kind) SELECT ?, snapshot_id, kind FROM refs WHERE vm_id=? AND kind=?`, dst, src, RefDisk)
	return err
}

// UpdateVM is Store.UpdateVM inside the transaction.
func (t *Tx) UpdateVM(ctx context.Context, v VM) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE vms SET state=?, pid=?, boot_ms=?, machine=?, snapshot_id=?, origin_commit=?, last_commit=?, state_reason=? WHERE id=?`,
		v.State, v.PID, v.BootMillis, v.Machine, nullable(v.SnapshotID), v.OriginCommit, v.LastCommit, v.StateReason, v.ID)
	if err != nil {
		return fmt.Errorf("update vm %s: %w", v.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("vm %s: %w", v.ID, errdefs.ErrNotFound)
	}
	return nil
}

// SetSnapshotPhase records how far the branch of snapshot id got.
func (t *Tx) SetSnapshotPhase(ctx context.Context, id, phase string) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE snapshots SET phase=? WHERE id=?`, phase, id)
	if err != nil {
		return fmt.Errorf("snapshot %s phase: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("snapshot %s: %w", id, errdefs.ErrNotFound)
	}
	return nil
}

// DropRefs removes every reference a VM holds (it is being deleted).
func (t *Tx) DropRefs(ctx context.Context, vmID string) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM refs WHERE vm_id=?`, vmID)
	return err
}

// DeleteVM is Store.DeleteVM inside the transaction.
func (t *Tx) DeleteVM(ctx context.Context, id string) error { return deleteVM(ctx, t.tx, id) }

// GetSnapshot returns one snapshot.
func (s *Store) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return sn, fmt.Errorf("snapshot %s: %w", id, errdefs.ErrNotFound)
	}
	return sn, err
}

// Unfinished lists the snapshots whose branch did not reach PhaseReady.
func (s *Store) Unfinished(ctx context.Context) ([]Snapshot, error) {
	return s.snapshots(ctx, `WHERE phase != ?`, PhaseReady)
}

// ListSnapshots lists every snapshot, oldest first.
func (s *Store) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	return s.snapshots(ctx, "")
}

func (s *Store) snapshots(ctx context.Context, where string, args ...any) ([]Snapshot, error) {
	return queryAll(ctx, s.db, `SELECT `+snapshotColumns+` FROM snapshots `+where+` ORDER BY created_at, id`,
		func(row interface{ Scan(...any) error }) (Snapshot, error) { return scanSnapshot(row) }, args...)
}

// Garbage lists snapshots nothing refers to any more (dead), and those whose
// RAM no VM maps any more although their disk layer is still used (memFree).
// A snapshot whose branch is still under way is neither: its children are
// not recorded yet.
func (s *Store) Garbage(ctx context.Context) (dead, memFree []Snapshot, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+snapshotColumns+`,
		(SELECT COUNT(*) FROM refs r WHERE r.snapshot_id = s.id),
		(SELECT COUNT(*) FROM refs r WHERE r.snapshot_id = s.id AND r.kind = ?)
		FROM snapshots s WHERE phase = ?`, RefMem, PhaseReady)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var all, mem int
		sn, err := scanSnapshot(rows, &all, &mem)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case all == 0:
			dead = append(dead, sn)
		case mem == 0:
			memFree = append(memFree, sn)
		}
	}
	return dead, memFree, rows.Err()
}

// DeleteSnapshot removes a snapshot's record.
func (s *Store) DeleteSnapshot(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id=?`, id)
	return err
}

// CreateVM is Store.CreateVM inside the transaction.
func (t *Tx) CreateVM(ctx context.Context, v VM) error {
	return createVM(ctx, t.tx, v)
}

// DropSnapshot forgets a snapshot and every reference to it.
func (s *Store) DropSnapshot(ctx context.Context, id string) error {
	return s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.tx.ExecContext(ctx, `DELETE FROM refs WHERE snapshot_id=?`, id); err != nil {
			return err
		}
		_, err := tx.tx.ExecContext(ctx, `DELETE FROM snapshots WHERE id=?`, id)
		return err
	})
}

// DropHolds removes every reference held under a name that starts with
// prefix: the holds of operations a crash interrupted.
func (s *Store) DropHolds(ctx context.Context, prefix string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM refs WHERE vm_id LIKE ? ESCAPE '\'`, likeEscape(prefix)+"%")
	return err
}

// DropRefs removes every reference holder holds.
func (s *Store) DropRefs(ctx context.Context, holder string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM refs WHERE vm_id=?`, holder)
	return err
}

// FinishSnapshot records a snapshot's layer and machine once they are
// made, and its phase.
func (t *Tx) FinishSnapshot(ctx context.Context, sn Snapshot) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE snapshots SET layer=?, machine=?, phase=? WHERE id=?`, sn.Layer, sn.Machine, sn.Phase, sn.ID)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", sn.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("snapshot %s: %w", sn.ID, errdefs.ErrNotFound)
	}
	return nil
}

// HoldersLike lists who holds references under a name starting with prefix.
func (s *Store) HoldersLike(ctx context.Context, prefix string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT vm_id FROM refs WHERE vm_id LIKE ? ESCAPE '\' ORDER BY vm_id`, likeEscape(prefix)+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
