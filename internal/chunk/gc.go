package chunk

import (
	"context"
	"errors"
	"sync/atomic"
)

// Collect deletes every stored chunk not in live, the set the caller made
// with Refs over every blob still needed. No write may run meanwhile: a
// chunk a write found stored, and so did not store again, would go. It
// returns the chunks and stored bytes it freed, also on error.
func (s *Store) Collect(ctx context.Context, live map[Hash]struct{}) (chunks int, bytes int64, err error) {
	if live == nil {
		return 0, 0, errors.New("collect: no live set (an empty one deletes every chunk)")
	}
	type dead struct {
		h    Hash
		size int64
	}
	var doomed []dead
	err = s.b.Walk(ctx, func(h Hash, size int64) error {
		if _, ok := live[h]; !ok {
			doomed = append(doomed, dead{h, size})
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	var n, freed atomic.Int64
	err = forEach(ctx, s.workers, doomed, func(ctx context.Context, d dead) error {
		if err := s.b.Delete(ctx, d.h); err != nil {
			return err
		}
		n.Add(1)
		freed.Add(d.size)
		return nil
	})
	return int(n.Load()), freed.Load(), err
}

// Usage is how many chunks, and stored bytes, the backend holds.
func (s *Store) Usage(ctx context.Context) (chunks int, bytes int64, err error) {
	err = s.b.Walk(ctx, func(_ Hash, size int64) error {
		chunks++
		bytes += size
		return nil
	})
	return chunks, bytes, err
}
