// Package store keeps versd's metadata (VMs, their parent/child edges,
// snapshots) in an embedded SQLite database. It holds facts only: it never
// starts processes or touches VM files, so every change here is one
// transaction that either happened or did not.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"vers/internal/errdefs"

	"modernc.org/sqlite" // also the database/sql driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// VM is one row of the vms table.
type VM struct {
	ID         string
	Alias      string
	State      string
	ParentID   string
	SnapshotID string // the snapshot this VM was started from, if any
	MemMiB     int
	VCPUs      int
	FsMiB      int
	Kernel     string
	Rootfs     string
	PID        int
	CreatedAt  time.Time
	BootMillis int64
	// Machine is the hypervisor's configuration (opaque JSON), kept so a
	// restarted daemon re-attaches to exactly the process it started.
	Machine string
	// OriginCommit is the commit the VM was started from; LastCommit the
	// newest commit in its history (a sleeping VM's is its state).
	OriginCommit string
	LastCommit   string
	// StateReason says why the VM is in its state, when it is not plain.
	StateReason string
}

// Store is the metadata database.
type Store struct {
	db *sql.DB
}

// migrations build the schema; each runs once, in order, tracked by
// PRAGMA user_version. Append new ones; never edit a released one.
var migrations = []string{
	`CREATE TABLE vms (
		id          TEXT PRIMARY KEY,
		alias       TEXT UNIQUE,
		state       TEXT NOT NULL,
		parent_id   TEXT,
		snapshot_id TEXT,
		mem_mib     INTEGER NOT NULL,
		vcpus       INTEGER NOT NULL,
		fs_mib      INTEGER NOT NULL,
		kernel      TEXT NOT NULL,
		rootfs      TEXT NOT NULL,
		pid         INTEGER NOT NULL DEFAULT 0,
		created_at  INTEGER NOT NULL,
		boot_ms     INTEGER NOT NULL DEFAULT 0,
		machine     TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX vms_parent ON vms(parent_id);`,
	`CREATE TABLE snapshots (
		id          TEXT PRIMARY KEY,
		source_vm   TEXT NOT NULL,
		created_at  INTEGER NOT NULL,
		dir         TEXT NOT NULL,
		layer       TEXT NOT NULL,
		mem_path    TEXT NOT NULL,
		state_path  TEXT NOT NULL,
		machine     TEXT NOT NULL
	);
	CREATE TABLE refs (
		vm_id       TEXT NOT NULL,
		snapshot_id TEXT NOT NULL,
		kind        TEXT NOT NULL,
		PRIMARY KEY (vm_id, snapshot_id, kind)
	);
	CREATE INDEX refs_snapshot ON refs(snapshot_id);`,
	// A branch records how far it got, so that a restarted daemon finishes
	// or undoes it by the same steps (internal/vm Recover).
	`ALTER TABLE snapshots ADD COLUMN phase TEXT NOT NULL DEFAULT 'ready';
	ALTER TABLE snapshots ADD COLUMN next_disk TEXT NOT NULL DEFAULT '';`,
	// Commits: immutable records of a VM's whole state in the chunk store
	// (internal/chunk); tags name them. A VM remembers the commit it was
	// started from and the newest one in its history; a snapshot made from
	// a commit (its state brought out of the store) says which. file_blobs
	// remembers which stored blob an immutable file (an image, a snapshot
	// layer) holds, so it is read and hashed once.
	`CREATE TABLE commits (
		id           TEXT PRIMARY KEY,
		manifest     TEXT NOT NULL,
		kind         TEXT NOT NULL,
		source_vm    TEXT NOT NULL DEFAULT '',
		source_alias TEXT NOT NULL DEFAULT '',
		parent       TEXT NOT NULL DEFAULT '',
		message      TEXT NOT NULL DEFAULT '',
		created_at   INTEGER NOT NULL,
		logical      INTEGER NOT NULL,
		added        INTEGER NOT NULL,
		mem_mib      INTEGER NOT NULL,
		vcpus        INTEGER NOT NULL,
		fs_mib       INTEGER NOT NULL
	);
	CREATE TABLE tags (
		name       TEXT PRIMARY KEY,
		commit_id  TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE INDEX tags_commit ON tags(commit_id);
	CREATE TABLE file_blobs (
		path     TEXT PRIMARY KEY,
		dev      INTEGER NOT NULL,
		ino      INTEGER NOT NULL,
		size     INTEGER NOT NULL,
		mtime_ns INTEGER NOT NULL,
		blob     TEXT NOT NULL
	);
	ALTER TABLE vms ADD COLUMN origin_commit TEXT NOT NULL DEFAULT '';
	ALTER TABLE vms ADD COLUMN last_commit TEXT NOT NULL DEFAULT '';
	ALTER TABLE snapshots ADD COLUMN commit_id TEXT NOT NULL DEFAULT '';`,
	// Why a VM is in its state, when it is not plain (one lost in a host
	// restart says so).
	`ALTER TABLE vms ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';`,
	// Which VM each project directory's HEAD names, as the CLI last said:
	// what `vers pick` must not kill under another directory's feet.
	`CREATE TABLE heads (
		dir        TEXT PRIMARY KEY,
		vm_id      TEXT NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX heads_vm ON heads(vm_id);`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Open opens (creating if needed) the database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises anyway and this avoids SQLITE_BUSY
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

func (s *Store) Close() error { return s.db.Close() }

const vmColumns = `id, COALESCE(alias,''), state, COALESCE(parent_id,''), COALESCE(snapshot_id,''), mem_mib, vcpus, fs_mib, kernel, rootfs, pid, created_at, boot_ms, machine, origin_commit, last_commit, state_reason`

func scanVM(row interface{ Scan(...any) error }) (VM, error) {
	var v VM
	var created int64
	err := row.Scan(&v.ID, &v.Alias, &v.State, &v.ParentID, &v.SnapshotID, &v.MemMiB, &v.VCPUs, &v.FsMiB, &v.Kernel, &v.Rootfs, &v.PID, &created, &v.BootMillis, &v.Machine, &v.OriginCommit, &v.LastCommit, &v.StateReason)
	v.CreatedAt = time.Unix(0, created).UTC()
	return v, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CreateVM inserts v. A taken alias is ErrConflict.
func (s *Store) CreateVM(ctx context.Context, v VM) error {
	return createVM(ctx, s.db, v)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func createVM(ctx context.Context, db execer, v VM) error {
	_, err := db.ExecContext(ctx, `INSERT INTO vms (id, alias, state, parent_id, snapshot_id, mem_mib, vcpus, fs_mib, kernel, rootfs, pid, created_at, boot_ms, machine, origin_commit, last_commit, state_reason)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		v.ID, nullable(v.Alias), v.State, nullable(v.ParentID), nullable(v.SnapshotID), v.MemMiB, v.VCPUs, v.FsMiB, v.Kernel, v.Rootfs, v.PID, v.CreatedAt.UnixNano(), v.BootMillis, v.Machine, v.OriginCommit, v.LastCommit, v.StateReason)
	if isUnique(err) && v.Alias != "" {
		return fmt.Errorf("alias %q is already used by another VM; choose another alias or kill that VM: %w", v.Alias, errdefs.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create vm %s: %w", v.ID, err)
	}
	return nil
}

// UpdateVM sets the mutable fields of v (state, pid, boot time, machine, snapshot).
func (s *Store) UpdateVM(ctx context.Context, v VM) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.UpdateVM(ctx, v) })
}

// GetVM returns the VM with that exact id.
func (s *Store) GetVM(ctx context.Context, id string) (VM, error) {
	v, err := scanVM(s.db.QueryRowContext(ctx, `SELECT `+vmColumns+` FROM vms WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return VM{}, fmt.Errorf("vm %s: %w", id, errdefs.ErrNotFound)
	}
	return v, err
}

// ResolveVM finds a VM by alias, id, or a unique prefix of its id.
func (s *Store) ResolveVM(ctx context.Context, ref string) (VM, error) {
	if ref == "" {
		return VM{}, fmt.Errorf("no VM named: %w", errdefs.ErrInvalid)
	}
	v, err := scanVM(s.db.QueryRowContext(ctx, `SELECT `+vmColumns+` FROM vms WHERE alias=? OR id=?`, ref, ref))
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return VM{}, err
	}
	found, err := s.vms(ctx, `WHERE id LIKE ? ESCAPE '\'`, likeEscape(ref)+"%")
	if err != nil {
		return VM{}, err
	}
	switch len(found) {
	case 0:
		return VM{}, fmt.Errorf("no VM has the alias or id %q; `vers status` lists them: %w", ref, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return VM{}, fmt.Errorf("%q is the start of %d VM ids; give more of the id or the alias: %w", ref, len(found), errdefs.ErrInvalid)
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// ListVMs returns every VM, oldest first.
func (s *Store) ListVMs(ctx context.Context) ([]VM, error) {
	return s.vms(ctx, "")
}

// Children returns the VMs whose parent is id.
func (s *Store) Children(ctx context.Context, id string) ([]VM, error) {
	return s.vms(ctx, `WHERE parent_id=?`, id)
}

// vms lists the VMs a WHERE clause selects, oldest first.
func (s *Store) vms(ctx context.Context, where string, args ...any) ([]VM, error) {
	return queryAll(ctx, s.db, `SELECT `+vmColumns+` FROM vms `+where+` ORDER BY created_at, id`, scanVM, args...)
}

// queryAll runs a query and scans every row it returns.
func queryAll[T any](ctx context.Context, db *sql.DB, query string, scan func(interface{ Scan(...any) error }) (T, error), args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// isUnique reports whether err is SQLite's unique-constraint violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// DeleteVM removes the row of id. Deleting a missing row is not an error.
func (s *Store) DeleteVM(ctx context.Context, id string) error {
	return deleteVM(ctx, s.db, id)
}

func deleteVM(ctx context.Context, db execer, id string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM vms WHERE id=?`, id); err != nil {
		return fmt.Errorf("delete vm %s: %w", id, err)
	}
	return nil
}
