package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"vers/internal/errdefs"
)

// Commit is one row of the commits table: the facts about a commit that
// listing needs. The commit itself is its manifest in the chunk store.
type Commit struct {
	ID string
	// Manifest is where the manifest is stored (a chunk.Blob as JSON).
	Manifest    string
	Kind        string
	SourceVM    string
	SourceAlias string
	Parent      string
	Message     string
	CreatedAt   time.Time
	Logical     int64
	Added       int64
	MemMiB      int
	VCPUs       int
	FsMiB       int
}

const commitColumns = `id, manifest, kind, source_vm, source_alias, parent, message, created_at, logical, added, mem_mib, vcpus, fs_mib`

func scanCommit(row interface{ Scan(...any) error }) (Commit, error) {
	var c Commit
	var created int64
	err := row.Scan(&c.ID, &c.Manifest, &c.Kind, &c.SourceVM, &c.SourceAlias, &c.Parent, &c.Message, &created,
		&c.Logical, &c.Added, &c.MemMiB, &c.VCPUs, &c.FsMiB)
	c.CreatedAt = time.Unix(0, created).UTC()
	return c, err
}

// CreateCommit records c. A commit that exists already (the same state
// committed twice, or imported again) is ErrConflict.
func (t *Tx) CreateCommit(ctx context.Context, c Commit) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO commits (`+commitColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		c.ID, c.Manifest, c.Kind, c.SourceVM, c.SourceAlias, c.Parent, c.Message, c.CreatedAt.UnixNano(),
		c.Logical, c.Added, c.MemMiB, c.VCPUs, c.FsMiB)
	if isUnique(err) {
		return fmt.Errorf("commit %s exists already: %w", short(c.ID), errdefs.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("record commit %s: %w", short(c.ID), err)
	}
	return nil
}

// DeleteCommit forgets a commit and its tags.
func (t *Tx) DeleteCommit(ctx context.Context, id string) error {
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM tags WHERE commit_id=?`, id); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(ctx, `DELETE FROM commits WHERE id=?`, id)
	return err
}

// ListCommits returns every commit, newest first.
func (s *Store) ListCommits(ctx context.Context) ([]Commit, error) {
	return s.commits(ctx, `ORDER BY created_at DESC, id`)
}

func (s *Store) commits(ctx context.Context, rest string, args ...any) ([]Commit, error) {
	return queryAll(ctx, s.db, `SELECT `+commitColumns+` FROM commits `+rest, scanCommit, args...)
}

// GetCommit returns the commit with that exact id.
func (s *Store) GetCommit(ctx context.Context, id string) (Commit, error) {
	c, err := scanCommit(s.db.QueryRowContext(ctx, `SELECT `+commitColumns+` FROM commits WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("commit %s: %w", short(id), errdefs.ErrNotFound)
	}
	return c, err
}

// ResolveCommit finds a commit by tag, id, or a unique prefix of its id.
func (s *Store) ResolveCommit(ctx context.Context, ref string) (Commit, error) {
	if ref == "" {
		return Commit{}, fmt.Errorf("no commit named: %w", errdefs.ErrInvalid)
	}
	c, err := scanCommit(s.db.QueryRowContext(ctx, `SELECT `+commitColumns+` FROM commits WHERE id = (SELECT commit_id FROM tags WHERE name=?)`, ref))
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return c, err
	}
	found, err := s.commits(ctx, `WHERE id LIKE ? ESCAPE '\'`, likeEscape(ref)+"%")
	if err != nil {
		return Commit{}, err
	}
	switch len(found) {
	case 0:
		return Commit{}, fmt.Errorf("no commit or tag is named %q; `vers commit ls` lists them: %w", ref, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Commit{}, fmt.Errorf("%q is the start of %d commit ids; give more of the id: %w", ref, len(found), errdefs.ErrInvalid)
}

// Tag is one row of the tags table.
type Tag struct {
	Name      string
	CommitID  string
	CreatedAt time.Time
}

// SetTag names a commit. An existing tag of that name is ErrConflict
// unless move; it then names the new commit.
func (t *Tx) SetTag(ctx context.Context, tag Tag, move bool) error {
	q := `INSERT INTO tags (name, commit_id, created_at) VALUES (?,?,?)`
	if move {
		q += ` ON CONFLICT(name) DO UPDATE SET commit_id=excluded.commit_id, created_at=excluded.created_at`
	}
	_, err := t.tx.ExecContext(ctx, q, tag.Name, tag.CommitID, tag.CreatedAt.UnixNano())
	if isUnique(err) {
		return fmt.Errorf("tag %q exists already; `vers tag mv %s COMMIT` moves it: %w", tag.Name, tag.Name, errdefs.ErrConflict)
	}
	return err
}

// DeleteTag removes a tag; a missing one is ErrNotFound.
func (s *Store) DeleteTag(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tags WHERE name=?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("no tag is named %q; `vers tag ls` lists them: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// ListTags returns every tag by name.
func (s *Store) ListTags(ctx context.Context) ([]Tag, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, commit_id, created_at FROM tags ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Tag
	for rows.Next() {
		var t Tag
		var created int64
		if err := rows.Scan(&t.Name, &t.CommitID, &created); err != nil {
			return nil, err
		}
		t.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// FileBlob says which stored blob an immutable file holds, as long as the
// file is the one it was (same device, inode, size and modification time).
type FileBlob struct {
	Path     string
	Dev, Ino uint64
	Size     int64
	MtimeNS  int64
	Blob     string
}

// PutFileBlob remembers f.
func (s *Store) PutFileBlob(ctx context.Context, f FileBlob) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO file_blobs (path, dev, ino, size, mtime_ns, blob) VALUES (?,?,?,?,?,?)`,
		f.Path, int64(f.Dev), int64(f.Ino), f.Size, f.MtimeNS, f.Blob)
	return err
}

// GetFileBlob returns what is remembered of path, or ErrNotFound.
func (s *Store) GetFileBlob(ctx context.Context, path string) (FileBlob, error) {
	list, err := s.fileBlobs(ctx, `WHERE path=?`, path)
	if err != nil {
		return FileBlob{}, err
	}
	if len(list) == 0 {
		return FileBlob{}, fmt.Errorf("file %s: %w", path, errdefs.ErrNotFound)
	}
	return list[0], nil
}

// FilesWithBlob lists the files remembered to hold blob.
func (s *Store) FilesWithBlob(ctx context.Context, blob string) ([]FileBlob, error) {
	return s.fileBlobs(ctx, `WHERE blob=?`, blob)
}

// ListFileBlobs lists everything remembered.
func (s *Store) ListFileBlobs(ctx context.Context) ([]FileBlob, error) {
	return s.fileBlobs(ctx, "")
}

func (s *Store) fileBlobs(ctx context.Context, where string, args ...any) ([]FileBlob, error) {
	return queryAll(ctx, s.db, `SELECT path, dev, ino, size, mtime_ns, blob FROM file_blobs `+where, scanFileBlob, args...)
}

func scanFileBlob(row interface{ Scan(...any) error }) (FileBlob, error) {
	var f FileBlob
	var dev, ino int64
	err := row.Scan(&f.Path, &dev, &ino, &f.Size, &f.MtimeNS, &f.Blob)
	f.Dev, f.Ino = uint64(dev), uint64(ino)
	return f, err
}

// DeleteFileBlob forgets path.
func (s *Store) DeleteFileBlob(ctx context.Context, path string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM file_blobs WHERE path=?`, path)
	return err
}

// SnapshotOfCommit returns a ready snapshot made from commit id, or ErrNotFound.
func (s *Store) SnapshotOfCommit(ctx context.Context, id string) (Snapshot, error) {
	list, err := s.snapshots(ctx, `WHERE commit_id=? AND phase=?`, id, PhaseReady)
	if err != nil {
		return Snapshot{}, err
	}
	if len(list) == 0 {
		return Snapshot{}, fmt.Errorf("snapshot of commit %s: %w", short(id), errdefs.ErrNotFound)
	}
	return list[len(list)-1], nil
}

// SnapshotWithLayer returns the snapshot whose disk layer is path, or ErrNotFound.
func (s *Store) SnapshotWithLayer(ctx context.Context, path string) (Snapshot, error) {
	list, err := s.snapshots(ctx, `WHERE layer=?`, path)
	if err != nil {
		return Snapshot{}, err
	}
	if len(list) == 0 {
		return Snapshot{}, fmt.Errorf("snapshot with layer %s: %w", path, errdefs.ErrNotFound)
	}
	return list[0], nil
}

// VMsWithCommit lists the VMs whose last commit is id in state.
func (s *Store) VMsWithCommit(ctx context.Context, id, state string) ([]VM, error) {
	return s.vms(ctx, `WHERE last_commit=? AND state=?`, id, state)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
