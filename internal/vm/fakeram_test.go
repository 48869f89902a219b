package vm

import (
	"errors"
	"os"
	"sync"

	"vers/internal/rampool"
)

// fakeRAM copies where the RAM filesystem clones.
type fakeRAM struct {
	mu      sync.Mutex
	fails   map[string]error
	flushed int
	owners  map[string]string // RAM file -> the home recorded on it
	// mapped is what Mapped returns; mappedOf the files it was asked of;
	// prefetched, per file, the ranges Prefetch was given.
	mapped     []rampool.Range
	mappedOf   []string
	prefetched map[string][]rampool.Range
}

func (r *fakeRAM) Own(path, home string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fails["Own"]; err != nil {
		return err
	}
	if r.owners == nil {
		r.owners = map[string]string{}
	}
	r.owners[path] = home
	return nil
}

// owner is the home recorded on path, "" if none.
func (r *fakeRAM) owner(path string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owners[path]
}

// failure is the error set for op, if any.
func (r *fakeRAM) failure(op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fails[op]
}

func (r *fakeRAM) Clone(src, dst string) error {
	if err := r.failure("Clone"); err != nil {
		return err
	}
	return copyFile(src, dst)
}

func (r *fakeRAM) CloneOver(src, dst string) error {
	if err := r.failure("CloneOver"); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err != nil {
		return err
	}
	return copyFile(src, dst)
}

func (r *fakeRAM) Flush(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed++
	return r.fails["Flush"]
}

// Mapped is what mapped says for path, as the RAM a process touched.
func (r *fakeRAM) Mapped(pid int, path string) ([]rampool.Range, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fails["Mapped"]; err != nil {
		return nil, err
	}
	r.mappedOf = append(r.mappedOf, path)
	return r.mapped, nil
}

func (r *fakeRAM) Prefetch(path string, ranges []rampool.Range) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fails["Prefetch"]; err != nil {
		return err
	}
	if r.prefetched == nil {
		r.prefetched = map[string][]rampool.Range{}
	}
	r.prefetched[path] = ranges
	return nil
}

// prefetchedFor is what was prefetched into path, nil if nothing.
func (r *fakeRAM) prefetchedFor(path string) []rampool.Range {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prefetched[path]
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		b, err = nil, nil // a RAM file the guest never wrote
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
