package dirtar

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var ctx = context.Background()

// buildTree makes the tree the round trip copies: nested directories, files
// of several modes, links inside and out, an empty directory, a read-only
// directory, a named pipe, set times.
func buildTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "a/b/c"), 0o755))
	must(t, os.Mkdir(filepath.Join(src, "empty"), 0o750))
	must(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "a/secret"), []byte("s3cret"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "a/b/c/deep.txt"), []byte("deep"), 0o644))
	big := make([]byte, 3<<20+17)
	rand.Read(big)
	must(t, os.WriteFile(filepath.Join(src, "a/big.bin"), big, 0o640))
	must(t, os.Symlink("b/c/deep.txt", filepath.Join(src, "a/inside")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "outside")))
	must(t, os.Symlink("../../nowhere", filepath.Join(src, "a/dangling")))
	must(t, syscall.Mkfifo(filepath.Join(src, "a/pipe"), 0o644))
	must(t, os.Mkdir(filepath.Join(src, "ro"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "ro/f"), []byte("r"), 0o444))
	must(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })
	when := time.Date(2021, 3, 4, 5, 6, 7, 891011000, time.UTC)
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		when = when.Add(time.Hour)
		return os.Chtimes(p, when, when)
	})
	// The links' own times, which Extract sets too.
	for _, l := range []string{"a/inside", "outside"} {
		setLinkTime(t, filepath.Join(src, l), when.Add(-24*time.Hour))
	}
	return src
}

func setLinkTime(t *testing.T, p string, when time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// describe lists a tree as lines: name, type, mode, time, and a file's
// checksum or a link's target.
func describe(t *testing.T, dir string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String() + " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + sha(b)
		}
		if fi.Mode()&fs.ModeNamedPipe != 0 {
			return nil // never copied
		}
		lines = append(lines, line)
		return nil
	})
	must(t, err)
	return lines
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestRoundTrip: a tree written and extracted comes back the same: contents,
// modes, link targets (the outside one as a link, not followed), times of
// files, directories and links; the pipe is skipped and counted.
func TestRoundTrip(t *testing.T) {
	src := buildTree(t)
	var buf bytes.Buffer
	wst, err := Write(ctx, &buf, src)
	must(t, err)
	dst := filepath.Join(t.TempDir(), "new", "copy")
	xst, err := Extract(ctx, &buf, dst, Options{})
	must(t, err)
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
	want, got := describe(t, src), describe(t, dst)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Fatalf("copy differs.\nsource:\n%s\n\ncopy:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	wantSt := Stats{Files: 5, Dirs: 6, Symlinks: 3, Bytes: 3<<20 + 17 + 18 + 6 + 4 + 1, Skipped: 1, SkippedNames: []string{"a/pipe"}}
	for _, st := range []Stats{wst, xst} {
		if st.Files != wantSt.Files || st.Dirs != wantSt.Dirs || st.Symlinks != wantSt.Symlinks ||
			st.Bytes != wantSt.Bytes || st.Skipped != 1 || len(st.SkippedNames) != 1 || st.SkippedNames[0] != "a/pipe" {
			t.Errorf("stats %+v, want %+v", st, wantSt)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "outside")); err != nil || l != "/etc/passwd" {
		t.Fatalf("outside link: %q %v", l, err)
	}
}

// TestExtractMerges: extracting into an existing directory replaces the
// files and links the archive has (a link by a file: the link goes, what it
// pointed to stays) and keeps the others.
func TestExtractMerges(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside.txt")
	must(t, os.WriteFile(outside, []byte("keep me"), 0o644))
	dst := filepath.Join(base, "dst")
	must(t, os.Mkdir(dst, 0o755))
	must(t, os.WriteFile(filepath.Join(dst, "mine"), []byte("mine"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dst, "f")))
	arc := archive(t, entry{name: "f", body: "new"}, entry{name: "mine2", body: "x"})
	_, err := Extract(ctx, arc, dst, Options{})
	must(t, err)
	if b, _ := os.ReadFile(outside); string(b) != "keep me" {
		t.Fatalf("wrote through the link: %q", b)
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "f")); !fi.Mode().IsRegular() {
		t.Fatalf("f is %v, want the file", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "mine")); string(b) != "mine" {
		t.Fatal("a file not in the archive changed")
	}
}

type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

// archive builds a tar archive from entries, the way a hostile guest could.
func archive(t *testing.T, es ...entry) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			io.WriteString(tw, e.body)
		}
	}
	must(t, tw.Close())
	return &buf
}

// TestExtractHostile: archives a malicious guest could send. None may
// create, change or read anything outside the destination; each is
// refused with ErrUnsafe, or confined (a link made, never followed).
func TestExtractHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		unsafe  bool // refused with ErrUnsafe; otherwise extracted, confined
	}{
		{"absolute name", []entry{{name: "/OUT/x", body: "pwned"}}, true},
		{"dot-dot", []entry{{name: "../OUT/x", body: "pwned"}}, true},
		{"dot-dot inside", []entry{{name: "a/../../OUT/x", body: "pwned"}}, true},
		{"link out then through it", []entry{{name: "a", typ: tar.TypeSymlink, link: "OUTABS"}, {name: "a/x", body: "pwned"}}, true},
		{"relative link out then through it", []entry{{name: "a", typ: tar.TypeSymlink, link: "../OUT"}, {name: "a/x", body: "pwned"}}, true},
		{"link to dot-dot then through it", []entry{{name: "a", typ: tar.TypeSymlink, link: ".."}, {name: "a/OUT/x", body: "pwned"}}, true},
		{"link inside then through it", []entry{{name: "d", typ: tar.TypeDir}, {name: "a", typ: tar.TypeSymlink, link: "d"}, {name: "a/x", body: "x"}}, true},
		{"link out then a dir below it", []entry{{name: "a", typ: tar.TypeSymlink, link: "OUTABS"}, {name: "a/sub/", typ: tar.TypeDir}}, true},
		{"link out then a link below it", []entry{{name: "a", typ: tar.TypeSymlink, link: "OUTABS"}, {name: "a/l", typ: tar.TypeSymlink, link: "/etc"}}, true},
		{"link out then a file of its name", []entry{{name: "f", typ: tar.TypeSymlink, link: "OUTABS/x"}, {name: "f", body: "replaces the link"}}, false},
		{"link out then a dir of its name", []entry{{name: "a", typ: tar.TypeSymlink, link: "OUTABS"}, {name: "a/", typ: tar.TypeDir, mode: 0o777}}, false},
		{"hard link out", []entry{{name: "h", typ: tar.TypeLink, link: "OUTABS/x"}}, true},
		{"the destination as a link", []entry{{name: ".", typ: tar.TypeSymlink, link: "OUTABS"}}, true},
		{"the destination as a file", []entry{{name: ".", body: "x"}}, true},
		{"a device", []entry{{name: "dev", typ: tar.TypeChar}}, false},
		{"a file over a directory", []entry{{name: "d/", typ: tar.TypeDir}, {name: "d", body: "x"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			out := filepath.Join(base, "OUT")
			must(t, os.Mkdir(out, 0o755))
			must(t, os.WriteFile(filepath.Join(out, "x"), []byte("original"), 0o644))
			dst := filepath.Join(base, "dst")
			var es []entry
			for _, e := range tt.entries {
				e.link = strings.ReplaceAll(e.link, "OUTABS", out)
				es = append(es, e)
			}
			_, err := Extract(ctx, archive(t, es...), dst, Options{})
			if tt.unsafe && !errors.Is(err, ErrUnsafe) {
				t.Fatalf("extracted with %v, want ErrUnsafe", err)
			}
			if !tt.unsafe && err != nil {
				t.Fatalf("refused a confined archive: %v", err)
			}
			if tt.unsafe {
				t.Logf("refused: %v", err)
			}
			ents, _ := os.ReadDir(out)
			b, _ := os.ReadFile(filepath.Join(out, "x"))
			fi, _ := os.Stat(out)
			if len(ents) != 1 || string(b) != "original" || fi.Mode().Perm() != 0o755 {
				t.Fatalf("outside the destination changed: %v, x=%q, mode %v", ents, b, fi.Mode())
			}
			if ents, _ := os.ReadDir(base); len(ents) != 2 {
				t.Fatalf("beside the destination: %v", ents)
			}
		})
	}
}

// TestExtractTruncated: an archive cut inside a file fails and leaves no
// part of that file; the files before it stay whole.
func TestExtractTruncated(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "whole", Mode: 0o644, Size: 4, Typeflag: tar.TypeReg})
	io.WriteString(tw, "abcd")
	tw.WriteHeader(&tar.Header{Name: "cut", Mode: 0o644, Size: 100_000, Typeflag: tar.TypeReg})
	tw.Write(make([]byte, 50_000))
	dst := t.TempDir()
	_, err := Extract(ctx, bytes.NewReader(buf.Bytes()), dst, Options{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a cut archive: %v", err)
	}
	ents, _ := os.ReadDir(dst)
	if len(ents) != 1 || ents[0].Name() != "whole" {
		t.Fatalf("left: %v, want only the whole file", ents)
	}
}

// TestExtractDropsSetid: the host drops set-user-ID bits, the guest keeps them.
func TestExtractDropsSetid(t *testing.T) {
	for _, keep := range []bool{false, true} {
		dst := t.TempDir()
		_, err := Extract(ctx, archive(t, entry{name: "suid", body: "x", mode: 0o4755}), dst, Options{KeepSetid: keep})
		must(t, err)
		fi, _ := os.Stat(filepath.Join(dst, "suid"))
		if got := fi.Mode()&fs.ModeSetuid != 0; got != keep {
			t.Errorf("KeepSetid %v: mode %v", keep, fi.Mode())
		}
	}
}

// TestWriteNotADirectory: Write refuses a file, and a link to one; a link
// to a directory, given as the tree, is followed (only there).
func TestWriteNotADirectory(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	must(t, os.Symlink("f", filepath.Join(dir, "lf")))
	for _, p := range []string{"f", "lf"} {
		if _, err := Write(ctx, io.Discard, filepath.Join(dir, p)); !errors.Is(err, ErrNotDir) {
			t.Errorf("%s: %v, want ErrNotDir", p, err)
		}
	}
	src := buildTree(t)
	must(t, os.Symlink(src, filepath.Join(dir, "ld")))
	var buf bytes.Buffer
	st, err := Write(ctx, &buf, filepath.Join(dir, "ld"))
	if err != nil || st.Files != 5 {
		t.Fatalf("a link to a tree: %+v %v", st, err)
	}
}

// TestWriteCancelled: a cancelled walk stops and leaves the archive without its end.
func TestWriteCancelled(t *testing.T) {
	src := buildTree(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	var buf bytes.Buffer
	if _, err := Write(c, &buf, src); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestExtractRepeatedDir: a directory an archive names again is one
// directory, counted once, with the times of its last entry.
func TestExtractRepeatedDir(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range 1000 {
		tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(int64(1e9+i), 0)})
	}
	tw.Close()
	dst := t.TempDir()
	st, err := Extract(ctx, &buf, dst, Options{})
	must(t, err)
	fi, _ := os.Stat(filepath.Join(dst, "d"))
	if st.Dirs != 1 || fi.ModTime().Unix() != 1e9+999 {
		t.Fatalf("stats %+v, time %v", st, fi.ModTime())
	}
}

// TestExtractRefusesSparse: a PAX sparse entry, whose few bytes expand to
// as many holes as it likes, is refused before anything is written. (This
// one is 256 MiB, so that a regression fails the test rather than fill
// the disk.)
func TestExtractRefusesSparse(t *testing.T) {
	// tar.Writer writes no sparse entries; build one as a hostile guest
	// would: a PAX header (an entry whose type is changed to 'x'), then the
	// file, its data a sparse map of one byte at the end of 256 MiB.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	recs := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", "bomb") + paxRecord("GNU.sparse.realsize", "268435456")
	must(t, tw.WriteHeader(&tar.Header{Name: "pax", Typeflag: tar.TypeReg, Size: int64(len(recs)), Format: tar.FormatUSTAR}))
	io.WriteString(tw, recs)
	must(t, tw.Flush())
	retype(buf.Bytes()[:512], tar.TypeXHeader)
	sparseMap := "1\n268435455\n1\n"
	data := sparseMap + string(make([]byte, 512-len(sparseMap))) + "x"
	must(t, tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatUSTAR}))
	io.WriteString(tw, data)
	must(t, tw.Close())

	if hdr, err := tar.NewReader(bytes.NewReader(buf.Bytes())).Next(); err != nil || hdr.Size != 256<<20 {
		t.Fatalf("the test's archive is no sparse bomb: %+v %v", hdr, err)
	}
	dst := t.TempDir()
	_, err := Extract(ctx, &buf, dst, Options{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a sparse entry: %v", err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Fatalf("written: %v", ents)
	}
}

// paxRecord is one PAX record: its length (itself included), key=value.
func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	n := len(s) + 1
	for len(strconv.Itoa(n))+len(s) != n {
		n++
	}
	return strconv.Itoa(n) + s
}

// retype changes the type of the tar header block b and its checksum.
func retype(b []byte, typ byte) {
	b[156] = typ
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}
