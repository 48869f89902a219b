package chunk

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func newStore(t testing.TB) (*Store, *Dir) {
	t.Helper()
	d, err := OpenDir(filepath.Join(t.TempDir(), "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	return New(d), d
}

// random returns n bytes that do not compress, the same for the same seed.
func random(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// text returns n bytes of words, which compress about 3:1.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 512)
	for i := range words {
		w := make([]byte, 2+r.IntN(9))
		for j := range w {
			w[j] = 'a' + byte(r.IntN(26))
		}
		words[i] = w
	}
	var b bytes.Buffer
	b.Grow(n + 16)
	for b.Len() < n {
		b.Write(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(2)&r.IntN(2)])
	}
	return b.Bytes()[:n]
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sparse makes a file of size bytes, holes but for data written at offsets.
func sparse(t testing.TB, path string, size int64, data map[int64][]byte) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// sameFile fails t unless the file at path holds want's bytes, reading both
// a chunk at a time (want may be a large sparse file too).
func sameFile(t testing.TB, path, want string) {
	t.Helper()
	a, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s differs from %s in the MiB at %d", path, want, off)
		}
		if ea != nil || eb != nil {
			return
		}
	}
}

// allocated is the disk space the file at path uses.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func noFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s is there (%v); want it gone", path, err)
	}
}

// spy is a Backend that counts calls and can act on the nth of each.
type spy struct {
	Backend
	puts, gets, syncs atomic.Int64
	onPut, onGet      func(n int64)
}

func (s *spy) Put(ctx context.Context, h Hash, b []byte) error {
	n := s.puts.Add(1)
	if s.onPut != nil {
		s.onPut(n)
	}
	return s.Backend.Put(ctx, h, b)
}

func (s *spy) Get(ctx context.Context, h Hash) ([]byte, error) {
	n := s.gets.Add(1)
	if s.onGet != nil {
		s.onGet(n)
	}
	return s.Backend.Get(ctx, h)
}

func (s *spy) Sync(ctx context.Context) error {
	s.syncs.Add(1)
	return s.Backend.Sync(ctx)
}

// stored is every chunk b holds.
func storedSet(t testing.TB, b Backend) map[Hash]int64 {
	t.Helper()
	m := make(map[Hash]int64)
	if err := b.Walk(t.Context(), func(h Hash, size int64) error { m[h] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

func refs(t testing.TB, s *Store, blobs ...Blob) map[Hash]struct{} {
	t.Helper()
	m := make(map[Hash]struct{})
	for _, b := range blobs {
		if err := s.Refs(t.Context(), b, func(h Hash) error { m[h] = struct{}{}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// mem is a Backend in memory: the store's own costs, without a filesystem's.
type mem struct {
	mu sync.Mutex
	m  map[Hash][]byte
}

var _ Backend = (*mem)(nil)

func newMem() *mem { return &mem{m: make(map[Hash][]byte)} }

func (m *mem) Put(_ context.Context, h Hash, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[h]; !ok {
		m.m[h] = bytes.Clone(b)
	}
	return nil
}

func (m *mem) Get(_ context.Context, h Hash) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.m[h]
	if !ok {
		return nil, missing(h)
	}
	return bytes.Clone(b), nil
}

func (m *mem) Has(_ context.Context, h Hash) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.m[h]
	return ok, nil
}

func (m *mem) Delete(_ context.Context, h Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, h)
	return nil
}

func (m *mem) Walk(_ context.Context, fn func(Hash, int64) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, b := range m.m {
		if err := fn(h, int64(len(b))); err != nil {
			return err
		}
	}
	return nil
}

func (m *mem) Sync(context.Context) error { return nil }
