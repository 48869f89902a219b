package chunk

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrBadArchive: an archive is truncated or not one Export wrote.
var ErrBadArchive = errors.New("bad archive")

// An archive is a tar stream: the entry "manifest" first, then an entry
// "chunks/<hex>" for each chunk, holding its stored (compressed) bytes. The
// manifest's header records the number of chunk entries (PAX record
// VERS.chunks), so that an archive cut at an entry boundary, which tar itself
// cannot tell from a whole one, is found truncated.
const (
	manifestName = "manifest"
	chunkPrefix  = "chunks/"
	countRecord  = "VERS.chunks"
	// maxStored bounds a chunk entry: zstd stores an incompressible chunk as
	// a raw block, a few bytes larger than the chunk.
	maxStored = ChunkSize + 1024
)

// Export writes an archive holding manifest (opaque to the store; the
// caller's description of blobs, say as JSON) and every chunk blobs use,
// each once, verified before it is written. In its Stats, Logical is the
// blobs' total size and Chunks = NewChunks the chunk entries, NewBytes
// their bytes.
func (s *Store) Export(ctx context.Context, w io.Writer, manifest []byte, blobs []Blob) (Stats, error) {
	var st Stats
	var hashes []Hash
	seen := make(map[Hash]struct{})
	for _, b := range blobs {
		st.Logical += b.Size
		err := s.Refs(ctx, b, func(h Hash) error {
			if _, ok := seen[h]; !ok {
				seen[h] = struct{}{}
				hashes = append(hashes, h)
			}
			return nil
		})
		if err != nil {
			return Stats{}, fmt.Errorf("export: %w", err)
		}
	}

	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	err := tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeReg,
		Name:       manifestName,
		Mode:       0o600,
		Size:       int64(len(manifest)),
		ModTime:    epoch,
		Format:     tar.FormatPAX,
		PAXRecords: map[string]string{countRecord: strconv.Itoa(len(hashes))},
	})
	if err == nil {
		_, err = tw.Write(manifest)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("export: %w", err)
	}
	err = s.fetchOrdered(ctx, hashes, func(h Hash, raw []byte) error {
		err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg,
			Name:     chunkPrefix + h.String(),
			Mode:     0o600,
			Size:     int64(len(raw)),
			ModTime:  epoch,
			Format:   tar.FormatUSTAR,
		})
		if err == nil {
			_, err = tw.Write(raw)
		}
		st.Chunks++
		st.NewChunks++
		st.NewBytes += int64(len(raw))
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	return st, nil
}

// fetchOrdered fetches and verifies the chunks hashes on s.workers
// goroutines and passes their stored bytes to fn in order.
func (s *Store) fetchOrdered(ctx context.Context, hashes []Hash, fn func(h Hash, raw []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		h   Hash
		raw []byte
		err error
	}
	// In order, each a result to come; the buffer and sem bound how many
	// chunks are in memory.
	futures := make(chan chan result, s.workers)
	sem := make(chan struct{}, s.workers)
	var wg sync.WaitGroup
	go func() {
		defer close(futures)
		for _, h := range hashes {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			f := make(chan result, 1)
			select {
			case futures <- f:
			case <-ctx.Done():
				<-sem
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				raw, err := s.b.Get(ctx, h)
				if err == nil {
					err = verifyRaw(h, raw)
				}
				f <- result{h, raw, err}
			})
		}
	}()
	var err error
	for f := range futures {
		r := <-f
		if err != nil {
			continue // draining
		}
		if err = r.err; err == nil {
			err = fn(r.h, r.raw)
		}
		if err != nil {
			cancel()
		}
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// Import reads an archive that Export wrote. It verifies every chunk
// against its name (decompressed and hashed) before storing it, so a corrupt
// archive stores nothing corrupt: it fails with ErrCorrupt naming the entry.
// It stores the chunks not already stored, Syncs, and returns the manifest.
// Truncated or malformed input is ErrBadArchive. On error, the chunks stored
// before it stay, sound and unreferenced, for Collect. In its Stats, Logical
// is the chunks' uncompressed bytes, Chunks the entries.
func (s *Store) Import(ctx context.Context, r io.Reader) (manifest []byte, st Stats, err error) {
	if _, err := s.Recover(ctx); err != nil {
		return nil, Stats{}, err
	}
	tr := tar.NewReader(r)
	manifest, count, err := readManifest(tr)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("import: %w", err)
	}
	n, st, err := s.importChunks(ctx, tr)
	if err != nil {
		return nil, st, fmt.Errorf("import: %w", err)
	}
	if n != count {
		return nil, st, fmt.Errorf("import: truncated: %d of %d chunks: %w", n, count, ErrBadArchive)
	}
	if err := s.b.Sync(ctx); err != nil {
		return nil, st, fmt.Errorf("import: %w", err)
	}
	return manifest, st, nil
}

// readManifest reads the first entry of an archive: the manifest, and the
// number of chunk entries to follow.
func readManifest(tr *tar.Reader) (manifest []byte, count int, err error) {
	hdr, err := tr.Next()
	if err == io.EOF {
		return nil, 0, fmt.Errorf("empty input: %w", ErrBadArchive)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	if hdr.Name != manifestName || hdr.Typeflag != tar.TypeReg || hdr.Size > maxBytes {
		return nil, 0, fmt.Errorf("first entry %q (%d bytes) is not a manifest: %w", hdr.Name, hdr.Size, ErrBadArchive)
	}
	count, err = strconv.Atoi(hdr.PAXRecords[countRecord])
	if err != nil {
		return nil, 0, fmt.Errorf("manifest has no chunk count: %w", ErrBadArchive)
	}
	manifest = make([]byte, hdr.Size)
	if _, err := io.ReadFull(tr, manifest); err != nil {
		return nil, 0, fmt.Errorf("manifest: %w: %v", ErrBadArchive, err)
	}
	return manifest, count, nil
}

// importChunks reads the chunk entries of an archive and stores them, on
// s.workers goroutines. It returns how many entries it read.
func (s *Store) importChunks(ctx context.Context, tr *tar.Reader) (entries int, st Stats, err error) {
	type entry struct {
		h   Hash
		raw *[]byte
	}
	var mu sync.Mutex
	g, gctx := newGroup(ctx)
	todo := make(chan entry, 2*s.workers)
	g.Go(func() error {
		defer close(todo)
		for {
			if err := gctx.Err(); err != nil {
				return err
			}
			hdr, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("after %d chunks: %w: %v", entries, ErrBadArchive, err)
			}
			h, err := chunkEntry(hdr)
			if err != nil {
				return err
			}
			buf := stored.Get().(*[]byte)
			*buf = (*buf)[:hdr.Size]
			if _, err := io.ReadFull(tr, *buf); err != nil {
				return fmt.Errorf("entry %s: %w: %v", hdr.Name, ErrBadArchive, err)
			}
			entries++
			select {
			case todo <- entry{h, buf}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	for range s.workers {
		g.Go(func() error {
			out := make([]byte, 0, ChunkSize)
			for e := range todo {
				if err := gctx.Err(); err != nil {
					return err
				}
				one, err := s.importChunk(gctx, e.h, *e.raw, out)
				stored.Put(e.raw)
				if err != nil {
					return err
				}
				mu.Lock()
				st.Add(one)
				mu.Unlock()
			}
			return nil
		})
	}
	err = g.Wait()
	return entries, st, err
}

// importChunk verifies chunk h, as stored in raw, and stores it unless it is
// there already. out is a buffer to decompress into.
func (s *Store) importChunk(ctx context.Context, h Hash, raw, out []byte) (Stats, error) {
	data, err := decode(h, raw, out)
	if err != nil {
		return Stats{}, fmt.Errorf("entry %s%s: %w", chunkPrefix, h, err)
	}
	st := Stats{Logical: int64(len(data)), Chunks: 1}
	if ok, err := s.b.Has(ctx, h); err != nil || ok {
		return st, err
	}
	if err := s.b.Put(ctx, h, raw); err != nil {
		return st, err
	}
	st.NewChunks, st.NewBytes = 1, int64(len(raw))
	return st, nil
}

// stored are buffers for chunks as stored.
var stored = sync.Pool{New: func() any { b := make([]byte, 0, maxStored); return &b }}

// chunkEntry checks that hdr is a chunk entry and returns its hash.
func chunkEntry(hdr *tar.Header) (Hash, error) {
	hex, ok := strings.CutPrefix(hdr.Name, chunkPrefix)
	h, err := ParseHash(hex)
	switch {
	case !ok || err != nil || h.String() != hex:
		return h, fmt.Errorf("entry %q is not a chunk: %w", hdr.Name, ErrBadArchive)
	case h == Zero:
		return h, fmt.Errorf("entry %q: the zero chunk is never stored: %w", hdr.Name, ErrBadArchive)
	case hdr.Typeflag != tar.TypeReg || hdr.Size <= 0 || hdr.Size > maxStored:
		return h, fmt.Errorf("entry %q (%d bytes) is not a chunk: %w", hdr.Name, hdr.Size, ErrBadArchive)
	}
	return h, nil
}
