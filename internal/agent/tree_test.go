package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vers/internal/dirtar"
	"vers/internal/errdefs"
)

// sendTree streams the host directory src to the guest as WriteTree does
// for vers cp -r.
func sendTree(ctx context.Context, c *Client, src, dst, name string) (TreeResult, error) {
	pr, pw := io.Pipe()
	go func() {
		_, err := dirtar.Write(ctx, pw, src)
		pw.CloseWithError(err)
	}()
	defer pr.CloseWithError(io.ErrClosedPipe)
	return c.WriteTree(ctx, dst, name, pr)
}

// fetchTree extracts the guest directory src into the host directory dst.
func fetchTree(ctx context.Context, c *Client, src, dst string) (dirtar.Stats, error) {
	rc, err := c.ReadTree(ctx, src)
	if err != nil {
		return dirtar.Stats{}, err
	}
	defer rc.Close()
	return dirtar.Extract(ctx, rc, dst, dirtar.Options{})
}

// fileSum is the SHA-256 of a file, read as a stream.
func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeRandom writes size random bytes to p, without holding them.
func writeRandom(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
}

// listing is a tree as lines of name, mode, time and checksum or target.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		b.WriteString(rel + " " + fi.Mode().String() + " " + fi.ModTime().UTC().Format(time.RFC3339Nano))
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			b.WriteString(" -> " + l)
		case fi.Mode().IsRegular():
			b.WriteString(" " + fileSum(t, p))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestTreeRoundTrip: a tree with a large file goes into the guest and back
// the same (checksums, modes, links as links, times); into an existing
// directory it lands under the source's name.
func TestTreeRoundTrip(t *testing.T) {
	f, c := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "proj")
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.Mkdir(filepath.Join(src, "empty"), 0o700))
	writeRandom(t, filepath.Join(src, "bin/large.bin"), 96<<20)
	must(t, os.WriteFile(filepath.Join(src, "bin/run"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "key"), []byte("k"), 0o600))
	must(t, os.Symlink("bin/run", filepath.Join(src, "run")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "passwd")))
	old := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, p := range []string{"bin/large.bin", "bin/run", "key", "bin", "empty", "."} {
		must(t, os.Chtimes(filepath.Join(src, p), old, old))
	}

	dst := filepath.Join(f.home, "in", "copy")
	res, err := sendTree(ctx, c, src, dst, "proj")
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != dst || res.Files != 3 || res.Dirs != 3 || res.Symlinks != 2 || res.Bytes != 96<<20+10+1 {
		t.Fatalf("result %+v", res)
	}
	want := listing(t, src)
	if got := listing(t, dst); got != want {
		t.Fatalf("in the guest:\n%s\nwant:\n%s", got, want)
	}
	// Again, into the directory that now exists: under the source's name.
	res, err = sendTree(ctx, c, src, dst, "proj")
	if err != nil || res.Path != filepath.Join(dst, "proj") {
		t.Fatalf("into an existing directory: %+v %v", res, err)
	}

	back := filepath.Join(t.TempDir(), "back")
	st, err := fetchTree(ctx, c, dst+"/proj", back)
	if err != nil {
		t.Fatal(err)
	}
	if got := listing(t, back); got != want {
		t.Fatalf("back on the host:\n%s\nwant:\n%s", got, want)
	}
	if st.Files != 3 || st.Bytes != 96<<20+11 {
		t.Fatalf("stats %+v", st)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadTreeRefuses: a file, or nothing, is no tree.
func TestReadTreeRefuses(t *testing.T) {
	f, c := newFixture(t)
	ctx := context.Background()
	must(t, os.WriteFile(filepath.Join(f.home, "file"), nil, 0o644))
	if _, err := c.ReadTree(ctx, "file"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "without -r") {
		t.Fatalf("a file: %v", err)
	}
	if _, err := c.ReadTree(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.WriteTree(ctx, "file", "x", strings.NewReader("")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("into a file: %v", err)
	}
}

// TestReadTreeWalkFails: a walk that fails part way (a file shrank while it
// was sent) ends the reader with the guest's reason, never with io.EOF.
func TestReadTreeWalkFails(t *testing.T) {
	f, c := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(f.home, "tree")
	must(t, os.Mkdir(dir, 0o755))
	big := filepath.Join(dir, "big")
	writeRandom(t, big, 32<<20)
	rc, err := c.ReadTree(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The stream's window holds the guest well before the file's end.
	if _, err := io.ReadFull(rc, make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	must(t, os.Truncate(big, 1000))
	_, err = io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("after the file shrank: %v", err)
	}
	// The session carries on.
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReadTreeCancelStopsGuest: a reader that goes away makes the guest
// stop walking and close the file it was sending.
func TestReadTreeCancelStopsGuest(t *testing.T) {
	f, c := newFixture(t)
	dir := filepath.Join(f.home, "tree")
	must(t, os.Mkdir(dir, 0o755))
	big := filepath.Join(dir, "big")
	must(t, os.WriteFile(big, make([]byte, 32<<20), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := c.ReadTree(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the guest opens the file", 5*time.Second, func() bool { return openInProcess(big) })
	cancel()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	rc.Close()
	waitUntil(t, "the guest closes the file", 5*time.Second, func() bool { return !openInProcess(big) })
}

// TestWriteTreeCut: an archive whose sender fails part way leaves the files
// that were whole and no part of the one being sent.
func TestWriteTreeCut(t *testing.T) {
	f, c := newFixture(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "whole", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("w"))
	tw.WriteHeader(&tar.Header{Name: "cut", Mode: 0o644, Size: 1 << 20, Typeflag: tar.TypeReg})
	tw.Write(make([]byte, 300_000))
	tw.Flush()
	dst := filepath.Join(f.home, "dst")
	_, err := c.WriteTree(context.Background(), dst, "", io.MultiReader(&buf, errReader{}))
	if err == nil {
		t.Fatal("a cut archive was written")
	}
	waitUntil(t, "only the whole file is left", 5*time.Second, func() bool {
		ents, _ := os.ReadDir(dst)
		return len(ents) == 1 && ents[0].Name() == "whole"
	})
	// An archive that ends cleanly where the transfer is cut is still cut:
	// only the end marker makes a transfer whole.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "one", Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Flush()
	if _, err := c.WriteTree(context.Background(), dst, "", io.MultiReader(&buf, errReader{})); err == nil {
		t.Fatal("a cut transfer of a complete-looking archive succeeded")
	}
}

// TestWriteTreeUnsafe: the guest refuses an archive that reaches out of
// the destination, and writes nothing outside it.
func TestWriteTreeUnsafe(t *testing.T) {
	f, c := newFixture(t)
	outside := filepath.Join(f.home, "outside")
	must(t, os.Mkdir(outside, 0o755))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "l", Linkname: outside, Typeflag: tar.TypeSymlink})
	tw.WriteHeader(&tar.Header{Name: "l/pwned", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	_, err := c.WriteTree(context.Background(), filepath.Join(f.home, "dst"), "", &buf)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("through a link: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}
}

// TestWriteTreeNoSpace: a full filesystem fails at once with ErrNoSpace;
// the files before stay whole, no temporary file is left, the session
// serves on.
func TestWriteTreeNoSpace(t *testing.T) {
	_, c := newFixture(t)
	dir := smallFS(t, "1m")
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a-small"), []byte("small"), 0o644))
	writeRandom(t, filepath.Join(src, "b-big"), 8<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := sendTree(ctx, c, src, filepath.Join(dir, "copy"), "")
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, errdefs.ErrNoSpace) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("8 MiB into 1 MiB: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "copy"))
	if len(ents) != 1 || ents[0].Name() != "a-small" {
		t.Fatalf("left: %v, want only the whole small file", ents)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
}
