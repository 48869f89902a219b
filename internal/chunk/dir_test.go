package chunk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDir(t *testing.T) {
	ctx := t.Context()
	d, err := OpenDir(filepath.Join(t.TempDir(), "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	h := Sum([]byte("data"))
	if ok, err := d.Has(ctx, h); ok || err != nil {
		t.Errorf("Has before Put = %v, %v", ok, err)
	}
	if _, err := d.Get(ctx, h); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), h.String()) {
		t.Errorf("Get before Put: %v; want ErrMissing naming %s", err, h)
	}
	if err := d.Put(ctx, h, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, h, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, h); string(got) != "one" || err != nil {
		t.Errorf("Get = %q, %v; want the first Put's bytes", got, err)
	}
	if ok, err := d.Has(ctx, h); !ok || err != nil {
		t.Errorf("Has after Put = %v, %v", ok, err)
	}
	if !strings.HasSuffix(d.Path(h), filepath.Join(h.String()[:2], h.String())) {
		t.Errorf("chunk at %s", d.Path(h))
	}
	for range 2 {
		if err := d.Delete(ctx, h); err != nil {
			t.Errorf("Delete: %v", err)
		}
	}
	if ok, _ := d.Has(ctx, h); ok {
		t.Error("Has after Delete")
	}
}

func TestDirWalkSkipsOthers(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "chunks")
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	a, b := Sum([]byte("a")), Sum([]byte("b"))
	for _, h := range []Hash{a, b} {
		if err := d.Put(ctx, h, []byte(h.String())); err != nil {
			t.Fatal(err)
		}
	}
	sa := a.String()
	other := "00"
	if sa[:2] == other {
		other = "01"
	}
	for _, p := range []string{
		filepath.Join(sa[:2], sa+".12345"),         // not a chunk name
		filepath.Join(sa[:2], strings.ToUpper(sa)), // not the canonical name
		filepath.Join(other, sa),                   // in the wrong directory
	} {
		writeFile(t, filepath.Join(root, p), []byte("junk"))
	}
	if err := os.Mkdir(filepath.Join(root, b.String()[:2], Sum(nil).String()), 0o700); err != nil {
		t.Fatal(err)
	}
	// Temp files: a Put under way, and one a crash left long ago.
	fresh := writeFile(t, filepath.Join(root, sa[:2], tmpPrefix+"1"), []byte("being written"))
	stale := writeFile(t, filepath.Join(root, sa[:2], tmpPrefix+"2"), []byte("left by a crash"))
	old := time.Now().Add(-2 * tmpMaxAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	got := storedSet(t, d)
	if len(got) != 2 || got[a] != 64 || got[b] != 64 {
		t.Errorf("Walk = %v; want a and b, 64 bytes each", got)
	}
	noFile(t, stale)
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("Walk removed a fresh temp file: %v", err)
	}
	// After a crash (the marker is there: no Sync since the Puts), OpenDir
	// removes every temp file.
	if _, err := OpenDir(root); err != nil {
		t.Fatal(err)
	}
	noFile(t, fresh)
}

func TestDirSyncMarker(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "chunks")
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(root, markerName)
	noFile(t, marker)
	h := Sum([]byte("a"))
	if err := d.Put(ctx, h, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no marker after a Put: %v", err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	noFile(t, marker)
	if err := d.Put(ctx, h, []byte("x")); err != nil { // there already
		t.Fatal(err)
	}
	noFile(t, marker)

	// A Put under way while syncfs runs may not be covered: the marker stays.
	if err := d.begin(); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	d.end()
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("marker gone with a Put under way: %v", err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	noFile(t, marker)
}

// A crash after Puts and before Sync can leave torn chunks; the next Store
// deletes them before it writes, so that they are stored again.
func TestRecover(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "chunks")
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	s := New(d)
	data := random(1, 8*ChunkSize)
	b, _, err := s.PutBytes(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: no Sync, two chunks torn, one of them long ago (outside
	// what Recover looks at).
	leaves := map[int64]Hash{}
	if err := s.walk(ctx, b, nil, func(i int64, h Hash) error { leaves[i] = h; return nil }); err != nil {
		t.Fatal(err)
	}
	writeFile(t, d.Path(leaves[1]), nil)
	writeFile(t, d.Path(leaves[2]), []byte("garbage"))
	old := time.Now().Add(-time.Hour)
	writeFile(t, d.Path(leaves[3]), nil)
	if err := os.Chtimes(d.Path(leaves[3]), old, old); err != nil {
		t.Fatal(err)
	}

	d, err = OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	s = New(d)
	if n, err := s.Recover(ctx); n != 2 || err != nil {
		t.Errorf("Recover = %d, %v; want 2 torn chunks deleted", n, err)
	}
	if n, err := s.Recover(ctx); n != 0 || err != nil {
		t.Errorf("Recover again = %d, %v; want nothing", n, err)
	}
	noFile(t, filepath.Join(root, markerName))
	writeFile(t, d.Path(leaves[3]), nil) // torn again, now in the window
	if err := os.Chtimes(d.Path(leaves[3]), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, markerName), nil)
	d, err = OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	s = New(d)
	_, st, err := s.PutBytes(ctx, data) // recovers first
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != 3 {
		t.Errorf("stats %+v; want the 3 torn chunks stored again", st)
	}
	if got, err := s.ReadBytes(ctx, b); err != nil || string(got) != string(data) {
		t.Errorf("ReadBytes after recovery: %v", err)
	}
}
