package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// PutFile stores the content of the regular file at path. It skips holes
// (SEEK_DATA/SEEK_HOLE) without reading them, takes all-zero chunks for
// Zero, and hashes and compresses chunks on GOMAXPROCS goroutines (pread); a
// chunk the backend already has is neither compressed nor rewritten.
// progress, if not nil, is called now and then (not per chunk, one call at a
// time) with the bytes done and the total, and last with done == total.
//
// The file must not change meanwhile. PutFile does not Sync: call
// Backend().Sync once the blobs of a commit are in, before recording them.
func (s *Store) PutFile(ctx context.Context, path string, progress func(done, total int64)) (Blob, Stats, error) {
	if _, err := s.Recover(ctx); err != nil {
		return Blob{}, Stats{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Blob{}, Stats{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Blob{}, Stats{}, err
	}
	if !fi.Mode().IsRegular() {
		return Blob{}, Stats{}, fmt.Errorf("store %s: not a regular file", path)
	}
	size := fi.Size()
	b, st, err := s.put(ctx, f, size, func(emit func(lo, hi int64) error) error {
		return dataChunks(f, size, emit)
	}, progress)
	if err != nil {
		return Blob{}, st, fmt.Errorf("store %s: %w", path, err)
	}
	return b, st, nil
}

// PutBytes stores a small in-memory blob (a manifest).
func (s *Store) PutBytes(ctx context.Context, data []byte) (Blob, Stats, error) {
	if _, err := s.Recover(ctx); err != nil {
		return Blob{}, Stats{}, err
	}
	size := int64(len(data))
	return s.put(ctx, bytes.NewReader(data), size, func(emit func(lo, hi int64) error) error {
		return emit(0, numChunks(size))
	}, nil)
}

// dataChunks calls emit, in order, with the ranges [lo, hi) of the chunks of
// f that hold data; the others are holes.
func dataChunks(f *os.File, size int64, emit func(lo, hi int64) error) error {
	next := int64(0) // the first chunk not yet emitted
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // nothing but hole after off
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return emit(max(next, off/ChunkSize), numChunks(size)) // no hole detection here: read it all
		}
		if err != nil {
			return err
		}
		if start >= size {
			return nil
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		end = min(end, size)
		if lo, hi := max(next, start/ChunkSize), numChunks(end); lo < hi {
			if err := emit(lo, hi); err != nil {
				return err
			}
			next = hi
		}
		off = end
	}
	return nil
}

// put stores the size bytes of r, reading only the chunks that ranges
// emits: the others are Zero.
func (s *Store) put(ctx context.Context, r io.ReaderAt, size int64, ranges func(emit func(lo, hi int64) error) error,
	progress func(done, total int64)) (Blob, Stats, error) {
	n := numChunks(size)
	leaves := make([]Hash, n) // the holes stay Zero
	w := &writer{s: s, seen: make(map[Hash]struct{})}
	p := &reporter{fn: progress, total: size, step: max(size/100, 16<<20)}
	chunkLen := func(i int64) int64 { return min(ChunkSize, size-i*ChunkSize) }
	holes := func(lo, hi int64) {
		if lo < hi {
			w.holes(int(hi - lo))
			p.add(min(hi*ChunkSize, size) - lo*ChunkSize)
		}
	}

	g, gctx := newGroup(ctx)
	todo := make(chan int64, 2*s.workers)
	g.Go(func() error {
		defer close(todo)
		next := int64(0)
		err := ranges(func(lo, hi int64) error {
			holes(next, lo)
			for i := lo; i < hi; i++ {
				select {
				case todo <- i:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			next = hi
			return nil
		})
		if err != nil {
			return err
		}
		holes(next, n)
		return nil
	})
	for range s.workers {
		g.Go(func() error {
			buf := make([]byte, ChunkSize)
			var out []byte
			for i := range todo {
				if err := gctx.Err(); err != nil {
					return err
				}
				data := buf[:chunkLen(i)]
				if _, err := r.ReadAt(data, i*ChunkSize); err != nil {
					if err == io.EOF {
						err = errors.New("it shrank while being read")
					}
					return fmt.Errorf("read at %d: %w", i*ChunkSize, err)
				}
				var err error
				if leaves[i], err = w.store(gctx, data, &out); err != nil {
					return err
				}
				p.add(int64(len(data)))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Blob{}, w.stats(), err
	}
	root, depth, err := w.tree(ctx, leaves)
	if err != nil {
		return Blob{}, w.stats(), err
	}
	p.finish()
	st := w.stats()
	st.Logical = size
	return Blob{Size: size, Root: root, Depth: depth}, st, nil
}

// writer stores the chunks of one write, each at most once.
type writer struct {
	s    *Store
	mu   sync.Mutex
	seen map[Hash]struct{} // chunks this write has stored or found stored
	st   Stats
}

func (w *writer) holes(n int) {
	w.mu.Lock()
	w.st.Chunks += n
	w.st.ZeroChunks += n
	w.mu.Unlock()
}

func (w *writer) stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// store stores chunk data unless it is all zero or already stored, and
// returns its hash. out is a compression buffer to reuse.
func (w *writer) store(ctx context.Context, data []byte, out *[]byte) (Hash, error) {
	if allZero(data) {
		w.holes(1)
		return Zero, nil
	}
	h := Sum(data)
	w.mu.Lock()
	_, dup := w.seen[h]
	w.seen[h] = struct{}{}
	w.st.Chunks++
	w.mu.Unlock()
	if dup {
		return h, nil
	}
	if ok, err := w.s.b.Has(ctx, h); err != nil || ok {
		return h, err
	}
	*out = compress(data, *out)
	if err := w.s.b.Put(ctx, h, *out); err != nil {
		return h, err
	}
	w.mu.Lock()
	w.st.NewChunks++
	w.st.NewBytes += int64(len(*out))
	w.mu.Unlock()
	return h, nil
}

// tree stores the index chunks over leaves and returns the root and depth.
func (w *writer) tree(ctx context.Context, leaves []Hash) (Hash, int, error) {
	if len(leaves) == 0 {
		return Zero, 0, nil
	}
	level, depth := leaves, 0
	buf := make([]byte, 0, ChunkSize)
	var out []byte
	for len(level) > 1 {
		next := make([]Hash, (len(level)+fanout-1)/fanout)
		for j := range next {
			buf = buf[:0]
			for _, h := range level[j*fanout : min((j+1)*fanout, len(level))] {
				buf = append(buf, h[:]...)
			}
			h, err := w.store(ctx, buf, &out)
			if err != nil {
				return Zero, 0, err
			}
			next[j] = h
		}
		level = next
		depth++
	}
	return level[0], depth, nil
}

// reporter calls a progress function every step bytes or so.
type reporter struct {
	fn          func(done, total int64)
	total, step int64

	mu         sync.Mutex
	done, last int64
	called     bool
}

func (p *reporter) add(n int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.done-p.last >= p.step {
		p.last = p.done
		p.called = true
		p.fn(p.done, p.total)
	}
}

func (p *reporter) finish() {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.called || p.last != p.total {
		p.called = true
		p.last = p.total
		p.fn(p.total, p.total)
	}
}
