package chunk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is a Backend in a local directory:
//
//	<dir>/ab/<hex hash>   a chunk, its hash starting with ab
//	<dir>/ab/.tmp-*       a chunk being written, renamed to its name once whole
//	<dir>/unsynced        exists while chunks may have been written and not yet Synced
//
// A temp file is made beside its chunk, not in a directory of its own: a
// rename within a directory locks that directory only, one across
// directories takes a lock of the whole filesystem. A crash can leave temp
// files: OpenDir removes them if the unsynced marker says there was one, and
// Walk those more than an hour old.
//
// One process opens a Dir at a time.
type Dir struct {
	dir string

	mu       sync.Mutex
	dirty    bool   // the unsynced marker exists
	puts     uint64 // Puts begun, ever
	inflight int    // Puts under way
	// suspect, if not zero, is when the unsynced marker that OpenDir found was
	// made: a crash left it, and chunks written since may be torn until Recover
	// has looked at them.
	suspect time.Time
}

var (
	_ Backend   = (*Dir)(nil)
	_ Recoverer = (*Dir)(nil)
)

const (
	tmpPrefix  = ".tmp-"
	markerName = "unsynced"
	// tmpMaxAge is when Walk takes a temp file for one a crash left: a Put
	// keeps one for milliseconds.
	tmpMaxAge = time.Hour
	// suspectSlack widens the window of chunks Recover verifies, for the
	// coarse kernel clock behind file times and small clock steps.
	suspectSlack = 5 * time.Second
)

// OpenDir opens (creating it if need be) the chunk directory dir. After a
// crash, it removes the temp files the crash left.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for i := range 256 {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	d := &Dir{dir: dir}
	fi, err := os.Stat(filepath.Join(dir, markerName))
	switch {
	case err == nil:
		// A crash: there may be temp files, and torn chunks for Recover.
		d.dirty = true
		d.suspect = fi.ModTime().Add(-suspectSlack)
		if err := d.removeTemps(); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return d, nil
}

// removeTemps removes every temp file.
func (d *Dir) removeTemps() error {
	for i := range 256 {
		sub := filepath.Join(d.dir, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := removeTemp(sub, e, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTemp removes e, in directory sub, if it is a temp file older than age.
func removeTemp(sub string, e fs.DirEntry, age time.Duration) error {
	if !strings.HasPrefix(e.Name(), tmpPrefix) {
		return nil
	}
	if age > 0 {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < age {
			return nil
		}
	}
	if err := os.Remove(filepath.Join(sub, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove temp file: %w", err)
	}
	return nil
}

// Path is where chunk h is (or would be) stored.
func (d *Dir) Path(h Hash) string {
	s := h.String()
	return filepath.Join(d.dir, s[:2], s)
}

func (d *Dir) Put(ctx context.Context, h Hash, compressed []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := d.Path(h)
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := d.begin(); err != nil {
		return err
	}
	defer d.end()
	f, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(compressed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store chunk %s: %w", h, err)
	}
	return nil
}

// begin counts a Put that writes a file. The first one after a Sync makes the
// unsynced marker, durably, before any chunk file can exist that a crash
// could tear: the marker is what tells the next OpenDir to have them checked.
func (d *Dir) begin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.dirty {
		if err := d.mark(); err != nil {
			return fmt.Errorf("mark chunk directory unsynced: %w", err)
		}
		d.dirty = true
	}
	d.puts++
	d.inflight++
	return nil
}

func (d *Dir) end() {
	d.mu.Lock()
	d.inflight--
	d.mu.Unlock()
}

func (d *Dir) mark() error {
	p := filepath.Join(d.dir, markerName)
	// Made anew, so that its time is now.
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	dir, err := os.Open(d.dir)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func (d *Dir) Get(ctx context.Context, h Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.Path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missing(h)
	}
	return b, err
}

func (d *Dir) Has(ctx context.Context, h Hash) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, err := os.Lstat(d.Path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (d *Dir) Delete(ctx context.Context, h Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(d.Path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Walk reports the chunk files only: whatever else is in the directory (temp
// files, the marker) is not a chunk. It removes temp files a crash left.
func (d *Dir) Walk(ctx context.Context, fn func(h Hash, size int64) error) error {
	return d.walk(ctx, func(h Hash, fi fs.FileInfo) error { return fn(h, fi.Size()) })
}

func (d *Dir) walk(ctx context.Context, fn func(h Hash, fi fs.FileInfo) error) error {
	for i := range 256 {
		if err := ctx.Err(); err != nil {
			return err
		}
		prefix := fmt.Sprintf("%02x", i)
		ents, err := os.ReadDir(filepath.Join(d.dir, prefix))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, tmpPrefix) {
				if err := removeTemp(filepath.Join(d.dir, prefix), e, tmpMaxAge); err != nil {
					return err
				}
				continue
			}
			h, err := ParseHash(name)
			if err != nil || h.String() != name || name[:2] != prefix || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if err := fn(h, fi); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sync makes every Put that returned before it durable with one syncfs(2):
// file data and directory entries alike, for the cost of one call rather
// than an fsync per chunk and per directory.
func (d *Dir) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	quiet := d.inflight == 0
	puts := d.puts
	d.mu.Unlock()

	f, err := os.Open(d.dir)
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(f.Fd()))
	f.Close()
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", d.dir, err)
	}

	// The marker goes only if no Put was under way when syncfs began and none
	// began since: then every chunk file is durable. Its removal need not be:
	// a marker that comes back only costs a needless Recover.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dirty && quiet && puts == d.puts && d.suspect.IsZero() {
		if err := os.Remove(filepath.Join(d.dir, markerName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		d.dirty = false
	}
	return nil
}

// Recover looks at the chunks written since the unsynced marker a crash left
// (if it left one): without an fsync per chunk, such a file can be empty or
// hold garbage, and a later write would take it for the chunk and not
// rewrite it. It deletes the chunks verify rejects with ErrCorrupt, syncs, and
// then forgets the marker.
func (d *Dir) Recover(ctx context.Context, verify func(h Hash, raw []byte) error) (deleted int, err error) {
	d.mu.Lock()
	since := d.suspect
	d.mu.Unlock()
	if since.IsZero() {
		return 0, nil
	}
	var bad []Hash
	err = d.walk(ctx, func(h Hash, fi fs.FileInfo) error {
		if fi.ModTime().Before(since) {
			return nil
		}
		raw, err := d.Get(ctx, h)
		if errors.Is(err, ErrMissing) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := verify(h, raw); errors.Is(err, ErrCorrupt) {
			bad = append(bad, h)
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("recover %s: %w", d.dir, err)
	}
	for _, h := range bad {
		if err := d.Delete(ctx, h); err != nil {
			return deleted, fmt.Errorf("recover %s: %w", d.dir, err)
		}
		deleted++
	}
	d.mu.Lock()
	d.suspect = time.Time{}
	d.mu.Unlock()
	return deleted, d.Sync(ctx)
}
