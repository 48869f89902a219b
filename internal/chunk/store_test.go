package chunk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHashText(t *testing.T) {
	h := Sum([]byte("vers"))
	p, err := ParseHash(h.String())
	if err != nil || p != h {
		t.Fatalf("ParseHash(%s) = %s, %v", h, p, err)
	}
	if s := h.String(); s != strings.ToLower(s) || len(s) != 64 {
		t.Errorf("String() = %q, want 64 lowercase hex digits", s)
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 64), h.String() + "00"} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
	b := Blob{Size: 5, Root: h, Depth: 0}
	js, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"size":5,"root":"` + h.String() + `","depth":0}`; string(js) != want {
		t.Errorf("json = %s, want %s", js, want)
	}
	var back Blob
	if err := json.Unmarshal(js, &back); err != nil || back != b {
		t.Errorf("json round trip = %+v, %v; want %+v", back, err, b)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		depth int
	}{
		{"empty", nil, 0},
		{"one byte", []byte{7}, 0},
		{"chunk-1", random(1, ChunkSize-1), 0},
		{"chunk", random(2, ChunkSize), 0},
		{"chunk+1", random(3, ChunkSize+1), 1},
		{"zero chunk", make([]byte, ChunkSize), 0},
		{"zero chunk+1", make([]byte, ChunkSize+1), 1},
		{"several MiB", append(text(4, 3<<20), random(5, 2<<20+12345)...), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := t.Context()
			dir := t.TempDir()
			in := writeFile(t, filepath.Join(dir, "in"), tt.data)
			b, st, err := s.PutFile(ctx, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b.Size != int64(len(tt.data)) || b.Depth != tt.depth {
				t.Errorf("blob %+v, want size %d depth %d", b, len(tt.data), tt.depth)
			}
			if st.Logical != b.Size {
				t.Errorf("stats %+v: Logical is not the size", st)
			}
			out := filepath.Join(dir, "out")
			if err := s.ReadFile(ctx, b, out); err != nil {
				t.Fatal(err)
			}
			sameFile(t, out, in)
			got, err := s.ReadBytes(ctx, b)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Errorf("ReadBytes = %d bytes, %v; want the %d put", len(got), err, len(tt.data))
			}
			if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("restored file: %v, %v; want mode 0600", fi.Mode(), err)
			}
			for _, deep := range []bool{false, true} {
				if err := s.Check(ctx, b, deep); err != nil {
					t.Errorf("Check(deep=%v): %v", deep, err)
				}
			}
			pb, _, err := s.PutBytes(ctx, tt.data)
			if err != nil || pb != b {
				t.Errorf("PutBytes = %+v, %v; want PutFile's %+v", pb, err, b)
			}
		})
	}
}

func TestStats(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	c := random(1, ChunkSize)
	// Chunks: c, zero, c, zero, ..., then a short tail; one index.
	var data []byte
	for range 50 {
		data = append(data, c...)
		data = append(data, make([]byte, ChunkSize)...)
	}
	data = append(data, 1, 2, 3)
	b, st, err := s.PutBytes(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Logical: int64(len(data)), Chunks: 101 + 1, ZeroChunks: 50, NewChunks: 3}
	got := st
	got.NewBytes = 0
	if got != want || b.Depth != 1 {
		t.Errorf("stats %+v depth %d, want %+v (NewBytes aside) depth 1", st, b.Depth, want)
	}
	if n, bytes, err := s.Usage(ctx); err != nil || n != 3 || bytes != st.NewBytes {
		t.Errorf("Usage = %d, %d, %v; want 3 chunks, %d bytes", n, bytes, err, st.NewBytes)
	}
	var total Stats
	total.Add(st)
	total.Add(st)
	if total.Chunks != 2*st.Chunks || total.NewBytes != 2*st.NewBytes || total.Logical != 2*st.Logical {
		t.Errorf("Add twice = %+v, from %+v", total, st)
	}
}

func TestSparse(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	dir := t.TempDir()
	const size = 200 << 20 // > 2048 chunks: depth 2
	data := map[int64][]byte{
		0:                  random(1, 4096),
		100<<20 + 12345:    random(2, 100000), // across chunks
		size - ChunkSize/2: random(3, 100),
		size - 1:           {0xff},
	}
	in := sparse(t, filepath.Join(dir, "in"), size, data)
	var calls int
	var last int64
	b, st, err := s.PutFile(ctx, in, func(done, total int64) {
		if done < last || total != size {
			t.Errorf("progress(%d, %d) after %d", done, total, last)
		}
		last = done
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.Depth != 2 {
		t.Errorf("depth %d, want 2", b.Depth)
	}
	if last != size || calls > 102 {
		t.Errorf("progress: %d calls, last done %d; want at most 102, the last at %d", calls, last, size)
	}
	// 4 data chunks (0, 1600, 1601, 3199); 2 index chunks at level 1 (3200
	// leaves), the root.
	if st.NewChunks != 4+2+1 || st.Chunks != 3200+2+1 || st.ZeroChunks != 3200-4 {
		t.Errorf("stats %+v; want 7 new chunks of 3203, 3196 zero", st)
	}
	out := filepath.Join(dir, "out")
	if err := s.ReadFile(ctx, b, out); err != nil {
		t.Fatal(err)
	}
	sameFile(t, out, in)
	if n := allocated(t, out); n > 1<<20 {
		t.Errorf("restored file uses %d bytes of disk; want it sparse (< 1 MiB)", n)
	}
	if err := s.Check(ctx, b, true); err != nil {
		t.Error(err)
	}
}

// A blob all zeros but for its last byte has a Zero index chunk.
func TestZeroIndex(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	dir := t.TempDir()
	const size = 3 * fanout * ChunkSize // three level-1 indexes, the first two Zero
	in := sparse(t, filepath.Join(dir, "in"), size, map[int64][]byte{size - 1: {1}})
	b, st, err := s.PutFile(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != 3 {
		t.Errorf("stats %+v; want 3 new chunks: data, index, root", st)
	}
	if n := len(refs(t, s, b)); n != 3 {
		t.Errorf("Refs: %d chunks, want 3", n)
	}
	out := filepath.Join(dir, "out")
	if err := s.ReadFile(ctx, b, out); err != nil {
		t.Fatal(err)
	}
	sameFile(t, out, in)
}

func TestDedupe(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	in := writeFile(t, filepath.Join(t.TempDir(), "in"), append(random(1, 3<<20), text(2, 3<<20)...))
	b1, st1, err := s.PutFile(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st1.NewChunks != 96+1 {
		t.Errorf("first put: %+v; want 97 new chunks", st1)
	}
	b2, st2, err := s.PutFile(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b2 != b1 || st2.NewChunks != 0 || st2.NewBytes != 0 || st2.Chunks != st1.Chunks {
		t.Errorf("second put: %+v, %+v; want %+v with nothing new", b2, st2, b1)
	}
}

// Chunks repeated in one file are stored once.
func TestDedupeWithin(t *testing.T) {
	s, _ := newStore(t)
	c := random(1, ChunkSize)
	data := bytes.Repeat(c, 300)
	_, st, err := s.PutBytes(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != 2 || st.Chunks != 301 {
		t.Errorf("stats %+v; want 2 new chunks (data, index) of 301", st)
	}
}

func TestChangedMiddle(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	dir := t.TempDir()
	data := random(1, 64<<20)
	if _, _, err := s.PutFile(ctx, writeFile(t, filepath.Join(dir, "a"), data), nil); err != nil {
		t.Fatal(err)
	}
	copy(data[24<<20:], random(2, 10<<20))
	b, st, err := s.PutFile(ctx, writeFile(t, filepath.Join(dir, "b"), data), nil)
	if err != nil {
		t.Fatal(err)
	}
	// 160 data chunks and the one index.
	if st.NewChunks != 161 || st.NewBytes < 10<<20 || st.NewBytes > 10<<20+ChunkSize {
		t.Errorf("stats %+v; want 161 new chunks, 10 MiB", st)
	}
	got, err := s.ReadBytes(ctx, b)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back: %v", err)
	}
}

// leafOf returns a data chunk of b and the number of chunks b has.
func leafOf(t *testing.T, s *Store, b Blob) Hash {
	t.Helper()
	var leaf Hash
	err := s.walk(t.Context(), b, nil, func(i int64, h Hash) error {
		if i == 1 {
			leaf = h
		}
		return nil
	})
	if err != nil || leaf == Zero {
		t.Fatalf("no second leaf in %+v: %v", b, err)
	}
	return leaf
}

func TestCorrupt(t *testing.T) {
	tests := []struct {
		name  string
		index bool // damage the root index rather than a data chunk
		harm  func([]byte) []byte
	}{
		{"flipped byte", false, func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"truncated", false, func(b []byte) []byte { return b[:len(b)-100] }},
		{"empty", false, func(b []byte) []byte { return nil }},
		{"not zstd", false, func(b []byte) []byte { return []byte("hello") }},
		{"index flipped", true, func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d := newStore(t)
			ctx := t.Context()
			dir := t.TempDir()
			b, _, err := s.PutFile(ctx, writeFile(t, filepath.Join(dir, "in"), random(1, 1<<20)), nil)
			if err != nil {
				t.Fatal(err)
			}
			h := b.Root
			if !tt.index {
				h = leafOf(t, s, b)
			}
			raw, err := os.ReadFile(d.Path(h))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, d.Path(h), tt.harm(raw))

			out := filepath.Join(dir, "out")
			err = s.ReadFile(ctx, b, out)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), h.String()) {
				t.Errorf("ReadFile: %v; want ErrCorrupt naming %s", err, h)
			}
			noFile(t, out)
			if err := s.Check(ctx, b, true); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Check(deep): %v; want ErrCorrupt", err)
			}
			if _, err := s.ReadBytes(ctx, b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ReadBytes: %v; want ErrCorrupt", err)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	for _, index := range []bool{false, true} {
		s, d := newStore(t)
		ctx := t.Context()
		dir := t.TempDir()
		b, _, err := s.PutFile(ctx, writeFile(t, filepath.Join(dir, "in"), random(1, 1<<20)), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := b.Root
		if !index {
			h = leafOf(t, s, b)
		}
		if err := d.Delete(ctx, h); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		if err := s.ReadFile(ctx, b, out); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), h.String()) {
			t.Errorf("index %v: ReadFile: %v; want ErrMissing naming %s", index, err, h)
		}
		noFile(t, out)
		for _, deep := range []bool{false, true} {
			if err := s.Check(ctx, b, deep); !errors.Is(err, ErrMissing) {
				t.Errorf("index %v: Check(deep=%v): %v; want ErrMissing", index, deep, err)
			}
		}
	}
}

func TestBadBlob(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	b, _, err := s.PutBytes(ctx, random(1, 3*ChunkSize))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Blob{
		{Size: b.Size, Root: b.Root, Depth: 0},
		{Size: b.Size, Root: b.Root, Depth: 2},
		{Size: -1},
		{Size: 0, Root: b.Root},
		{Size: b.Size + ChunkSize, Root: b.Root, Depth: 1}, // the index is one hash short
	} {
		if _, err := s.ReadBytes(ctx, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ReadBytes(%+v): %v; want ErrCorrupt", bad, err)
		}
	}
	big := Blob{Size: maxBytes + 1, Root: b.Root, Depth: 1}
	if _, err := s.ReadBytes(ctx, big); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadBytes of %d bytes: %v; want refused", big.Size, err)
	}
}

func TestReadFileRefusesExisting(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	b, _, err := s.PutBytes(ctx, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	out := writeFile(t, filepath.Join(t.TempDir(), "out"), []byte("old"))
	if err := s.ReadFile(ctx, b, out); !errors.Is(err, fs.ErrExist) {
		t.Errorf("ReadFile over a file: %v; want ErrExist", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "old" {
		t.Errorf("the existing file holds %q now", got)
	}
}

func TestCollect(t *testing.T) {
	s, d := newStore(t)
	ctx := t.Context()
	shared := random(9, 1<<20)
	var blobs []Blob
	for i := range 3 {
		b, _, err := s.PutBytes(ctx, append(random(uint64(i), 1<<20), shared...))
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	live := refs(t, s, blobs[0], blobs[2])
	before := storedSet(t, d)
	var wantChunks int
	var wantBytes int64
	for h, size := range before {
		if _, ok := live[h]; !ok {
			wantChunks++
			wantBytes += size
		}
	}
	if wantChunks != 16+1 {
		t.Fatalf("blob 1 alone has %d chunks; want 17", wantChunks)
	}
	n, freed, err := s.Collect(ctx, live)
	if err != nil || n != wantChunks || freed != wantBytes {
		t.Errorf("Collect = %d, %d, %v; want %d, %d", n, freed, err, wantChunks, wantBytes)
	}
	after := storedSet(t, d)
	if len(after) != len(live) {
		t.Errorf("%d chunks stored after Collect, want the %d live", len(after), len(live))
	}
	for h := range live {
		if _, ok := after[h]; !ok {
			t.Errorf("live chunk %s was collected", h)
		}
	}
	for _, i := range []int{0, 2} {
		if err := s.Check(ctx, blobs[i], true); err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	if err := s.Check(ctx, blobs[1], false); !errors.Is(err, ErrMissing) {
		t.Errorf("collected blob: %v; want ErrMissing", err)
	}
	if _, _, err := s.Collect(ctx, nil); err == nil {
		t.Error("Collect(nil) succeeded")
	}
	if n, _, err := s.Collect(ctx, map[Hash]struct{}{}); err != nil || n != len(live) {
		t.Errorf("Collect(empty) = %d, %v; want all %d gone", n, err, len(live))
	}
}

func TestCancelPut(t *testing.T) {
	_, d := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sp := &spy{Backend: d}
	// Puts that begin once the write is cancelled: each worker may finish
	// the chunk it had taken before it saw the cancel, and no more.
	var late atomic.Int64
	sp.onPut = func(n int64) {
		if ctx.Err() != nil {
			late.Add(1)
		}
		if n == 5 {
			cancel()
		}
	}
	s := New(sp)
	in := writeFile(t, filepath.Join(t.TempDir(), "in"), random(1, 32<<20))
	if _, _, err := s.PutFile(ctx, in, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutFile: %v; want canceled", err)
	}
	if n := late.Load(); n > int64(s.workers) {
		t.Errorf("%d Puts began after the cancel, of 512 chunks; want at most one a worker (%d)", n, s.workers)
	}
	if total := sp.puts.Load(); total >= 512 {
		t.Errorf("the cancelled write stored all %d chunks", total)
	}
}

func TestCancelRead(t *testing.T) {
	s, d := newStore(t)
	b, _, err := s.PutBytes(t.Context(), random(1, 32<<20))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sp := &spy{Backend: d}
	sp.onGet = func(n int64) {
		if n == 5 {
			cancel()
		}
	}
	s = New(sp)
	out := filepath.Join(t.TempDir(), "out")
	if err := s.ReadFile(ctx, b, out); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadFile: %v; want canceled", err)
	}
	noFile(t, out)
	if late := sp.gets.Load() - 5; late > int64(s.workers) {
		t.Errorf("%d Gets after the cancel, of 512 chunks; want at most one a worker (%d)", late, s.workers)
	}
}

func TestProgress(t *testing.T) {
	s, _ := newStore(t)
	in := writeFile(t, filepath.Join(t.TempDir(), "in"), random(1, 40<<20))
	var dones []int64
	if _, _, err := s.PutFile(t.Context(), in, func(done, total int64) { dones = append(dones, done) }); err != nil {
		t.Fatal(err)
	}
	// Every 16 MiB, and at the end.
	if len(dones) != 3 || dones[0] < 16<<20 || dones[1] < 32<<20 || dones[2] != 40<<20 {
		t.Errorf("progress at %v; want about 16, 32 and 40 MiB", dones)
	}
}

func TestDataChunks(t *testing.T) {
	const size = 200 << 20
	p := sparse(t, filepath.Join(t.TempDir(), "in"), size, map[int64][]byte{
		0:                  {1},
		100<<20 + 12345:    random(2, 100000),
		size - ChunkSize/2: {3},
	})
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got [][2]int64
	if err := dataChunks(f, size, func(lo, hi int64) error { got = append(got, [2]int64{lo, hi}); return nil }); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{0, 1}, {1600, 1602}, {3199, 3200}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("data chunks %v, want %v", got, want)
	}
}
