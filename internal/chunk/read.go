package chunk

import (
	"context"
	"fmt"
	"os"

	"vers/internal/revert"
)

// maxBytes is the largest blob ReadBytes returns.
const maxBytes = 64 << 20

// ReadFile writes blob b to a new file at path (mode 0600; an existing file
// is an error). The file is truncated to b.Size first, so Zero chunks are
// holes; chunks are fetched, verified and written on GOMAXPROCS goroutines
// (pwrite). On any error the file is removed. ReadFile does not fsync.
func (s *Store) ReadFile(ctx context.Context, b Blob, path string) error {
	if err := b.validate(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	undo := revert.New()
	defer undo.Fail()
	undo.Add(func() { f.Close(); os.Remove(path) })
	if err := f.Truncate(b.Size); err != nil {
		return err
	}
	err = s.read(ctx, b, func(off int64, data []byte) error {
		_, err := f.WriteAt(data, off)
		return err
	})
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	undo.Success()
	return nil
}

// ReadBytes returns a small blob's content (at most 64 MiB).
func (s *Store) ReadBytes(ctx context.Context, b Blob) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	if b.Size > maxBytes {
		return nil, fmt.Errorf("blob of %d bytes is too large to read into memory (limit %d); use ReadFile", b.Size, maxBytes)
	}
	buf := make([]byte, b.Size)
	err := s.read(ctx, b, func(off int64, data []byte) error {
		copy(buf[off:], data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// Refs calls fn for every chunk blob b uses, index chunks included, Zero
// not, each once. It reads (verified) the index chunks. GC marks live chunks
// with it; Export lists what to ship.
func (s *Store) Refs(ctx context.Context, b Blob, fn func(Hash) error) error {
	seen := make(map[Hash]struct{})
	first := func(h Hash) bool {
		_, ok := seen[h]
		seen[h] = struct{}{}
		return !ok
	}
	return s.walk(ctx, b,
		func(h Hash) (bool, error) {
			if !first(h) {
				return false, nil // the same index, so the same chunks below
			}
			return true, fn(h)
		},
		func(_ int64, h Hash) error {
			if !first(h) {
				return nil
			}
			return fn(h)
		})
}

// Check verifies that blob b is whole: every chunk present and, with deep,
// decompressing to its hash (and to its length in the blob).
func (s *Store) Check(ctx context.Context, b Blob, deep bool) error {
	if deep {
		return s.read(ctx, b, func(int64, []byte) error { return nil })
	}
	var refs []Hash
	if err := s.Refs(ctx, b, func(h Hash) error { refs = append(refs, h); return nil }); err != nil {
		return err
	}
	return forEach(ctx, s.workers, refs, func(ctx context.Context, h Hash) error {
		ok, err := s.b.Has(ctx, h)
		if err == nil && !ok {
			err = missing(h)
		}
		return err
	})
}

// read fetches and verifies the data chunks of b on s.workers goroutines and
// passes each to sink with its offset; Zero chunks it skips.
func (s *Store) read(ctx context.Context, b Blob, sink func(off int64, data []byte) error) error {
	if err := b.validate(); err != nil {
		return err
	}
	type job struct {
		i int64
		h Hash
	}
	g, gctx := newGroup(ctx)
	jobs := make(chan job, 2*s.workers)
	g.Go(func() error {
		defer close(jobs)
		return s.walk(gctx, b, nil, func(i int64, h Hash) error {
			select {
			case jobs <- job{i, h}:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range s.workers {
		g.Go(func() error {
			buf := make([]byte, 0, ChunkSize)
			for j := range jobs {
				if err := gctx.Err(); err != nil {
					return err
				}
				data, err := s.get(gctx, j.h, buf)
				if err != nil {
					return err
				}
				off := j.i * ChunkSize
				if want := min(ChunkSize, b.Size-off); int64(len(data)) != want {
					return fmt.Errorf("%w: %s: %d bytes where the blob has %d", ErrCorrupt, j.h, len(data), want)
				}
				if err := sink(off, data); err != nil {
					return err
				}
				buf = data[:0]
			}
			return nil
		})
	}
	return g.Wait()
}

// walk walks b's tree in order. It calls index (if not nil) for every index
// chunk before reading it, and descends only if index says so; it calls leaf
// for every data chunk but Zero ones, with its position.
func (s *Store) walk(ctx context.Context, b Blob, index func(Hash) (bool, error), leaf func(i int64, h Hash) error) error {
	if err := b.validate(); err != nil {
		return err
	}
	return s.walkNode(ctx, b.Root, b.Depth, 0, numChunks(b.Size), index, leaf)
}

// walkNode walks the subtree of node h at level (0: a data chunk), whose
// first leaf is leaf number first, in a blob of n leaves.
func (s *Store) walkNode(ctx context.Context, h Hash, level int, first, n int64,
	index func(Hash) (bool, error), leaf func(i int64, h Hash) error) error {
	if h == Zero {
		return nil
	}
	if level == 0 {
		return leaf(first, h)
	}
	if index != nil {
		descend, err := index(h)
		if err != nil || !descend {
			return err
		}
	}
	span := int64(1) // leaves under each child
	for range level - 1 {
		span *= fanout
	}
	children := (min(first+span*fanout, n) - first + span - 1) / span
	data, err := s.get(ctx, h, nil)
	if err != nil {
		return err
	}
	if int64(len(data)) != children*int64(len(h)) {
		return fmt.Errorf("%w: index %s holds %d bytes where the blob has %d hashes", ErrCorrupt, h, len(data), children)
	}
	for k := range children {
		var c Hash
		copy(c[:], data[k*int64(len(c)):])
		if err := s.walkNode(ctx, c, level-1, first+k*span, n, index, leaf); err != nil {
			return err
		}
	}
	return nil
}
