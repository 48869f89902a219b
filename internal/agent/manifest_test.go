package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func manifestOf(t *testing.T, c *Client, req ManifestRequest) (map[string]Entry, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string]Entry{}
	var order []string
	if _, err := c.Manifest(ctx, req, func(e Entry) error {
		got[e.Path] = e
		order = append(order, e.Path)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got, order
}

// TestManifest: each kind of entry with its metadata; symlinks are listed,
// never followed; excluded trees are left out; a named pipe is not opened.
func TestManifest(t *testing.T) {
	_, c := newFixture(t)
	root := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "skip/deep"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a/b/file"), []byte("hello"), 0o640))
	must(os.WriteFile(filepath.Join(root, "skip/deep/x"), []byte("no"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "a/out")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(syscall.Chmod(filepath.Join(root, "a"), 0o1750))

	got, order := manifestOf(t, c, ManifestRequest{Roots: []string{root}, Exclude: []string{filepath.Join(root, "skip")}, Hash: true})
	sum := sha256.Sum256([]byte("hello"))
	f := got[filepath.Join(root, "a/b/file")]
	if f.Type != TypeFile || f.Size != 5 || f.Mode != 0o640 || f.Sum != hex.EncodeToString(sum[:]) || f.Ino == 0 || f.MTime == 0 || f.CTime == 0 {
		t.Errorf("file %+v", f)
	}
	if d := got[filepath.Join(root, "a")]; d.Type != TypeDir || d.Mode != 0o1750 {
		t.Errorf("dir %+v", d)
	}
	if l := got[filepath.Join(root, "a/out")]; l.Type != TypeSymlink || l.Link != outside {
		t.Errorf("symlink %+v", l)
	}
	if p := got[filepath.Join(root, "fifo")]; p.Type != TypeOther || p.Sum != "" {
		t.Errorf("fifo %+v", p)
	}
	for p := range got {
		if strings.HasPrefix(p, outside) || strings.HasPrefix(p, filepath.Join(root, "skip")) {
			t.Errorf("listed %s", p)
		}
	}
	want := []string{root, root + "/a", root + "/a/b", root + "/a/b/file", root + "/a/out", root + "/fifo"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("order %q, want %q", order, want)
	}

	// Without Hash, no content is read; hash reads what is asked.
	got, _ = manifestOf(t, c, ManifestRequest{Roots: []string{root}})
	if got[filepath.Join(root, "a/b/file")].Sum != "" {
		t.Error("hashed without being asked")
	}
	ctx := context.Background()
	res, err := c.Hash(ctx, []string{filepath.Join(root, "a/b/file"), filepath.Join(root, "fifo"), filepath.Join(root, "a/out"), "rel"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || res[0].Sum != hex.EncodeToString(sum[:]) || res[1].Err == "" || res[2].Err == "" || res[3].Err == "" {
		t.Errorf("hash %+v", res)
	}
}

func TestManifestRefusals(t *testing.T) {
	_, c := newFixture(t)
	ctx := context.Background()
	for _, req := range []ManifestRequest{{}, {Roots: []string{"relative"}}, {Roots: []string{"/"}, Exclude: []string{"tmp"}}} {
		if _, err := c.Manifest(ctx, req, func(Entry) error { return nil }); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
	// A missing root is an entry with its error, counted.
	var got []Entry
	n, err := c.Manifest(ctx, ManifestRequest{Roots: []string{"/no/such/dir"}}, func(e Entry) error { got = append(got, e); return nil })
	if err != nil || n != 1 || len(got) != 1 || got[0].Err == "" {
		t.Errorf("%d errors, %+v, %v", n, got, err)
	}
}

// TestManifestCallerStops: a caller that stops part way ends the stream,
// and the session goes on.
func TestManifestCallerStops(t *testing.T) {
	_, c := newFixture(t)
	root := t.TempDir()
	for i := range 3000 {
		os.WriteFile(filepath.Join(root, "f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+time.Now().Format("150405.000000000")), nil, 0o644)
	}
	stop := errors.New("enough")
	seen := 0
	_, err := c.Manifest(context.Background(), ManifestRequest{Roots: []string{root}}, func(Entry) error {
		if seen++; seen == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("%v", err)
	}
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatalf("session after a stopped manifest: %v", err)
	}
}
