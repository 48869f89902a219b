package cli

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vers/api"
)

// hostTree makes a tree with what vers cp -r must keep: nested directories,
// modes, a link inside and one out of the tree, an empty directory, times;
// and a named pipe, which it skips.
func hostTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "proj")
	for _, d := range []string{"src/pkg", "empty"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{"src/pkg/main.go": 0o644, "build.sh": 0o755, "secret": 0o600}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte("content of "+name), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(src, name), mode)
	}
	os.Symlink("src/pkg/main.go", filepath.Join(src, "main"))
	os.Symlink("/etc/passwd", filepath.Join(src, "passwd"))
	syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644)
	when := time.Date(2022, 2, 2, 2, 2, 2, 0, time.UTC)
	for _, p := range []string{"src/pkg/main.go", "build.sh", "secret", "src/pkg", "src", "empty", "."} {
		when = when.Add(time.Minute)
		if err := os.Chtimes(filepath.Join(src, p), when, when); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// treeLines describes a tree: names, modes, times, contents' checksums,
// link targets; named pipes left out.
func treeLines(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Lstat(p)
		if fi.Mode()&fs.ModeNamedPipe != 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.Mode().String() + " " + fi.ModTime().UTC().Format(time.RFC3339))
		if l, err := os.Readlink(p); err == nil {
			b.WriteString(" -> " + l)
		} else if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			sum := sha256.Sum256(data)
			b.WriteString(" " + hex.EncodeToString(sum[:]))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// TestCopyTreeBothWays: vers cp -r into a VM and back keeps the tree;
// into an existing directory it lands under the source's name; the text
// summary and the JSON say what was copied.
func TestCopyTreeBothWays(t *testing.T) {
	e := newEnv(t)
	e.d.withGuest(t)
	src := hostTree(t)
	guest := t.TempDir() // the guest's side, on this machine
	dst := filepath.Join(guest, "copy")
	if code := e.run("cp", "-r", src, ":"+dst); code != 0 {
		t.Fatalf("cp -r into the VM: exit %d: %s", code, e.errOut)
	}
	summary := e.out.String()
	for _, want := range []string{"3 files", "4 directories", "2 symlinks", ":" + dst, "skipped 1 entry", "fifo"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %q", summary, want)
		}
	}
	want := treeLines(t, src)
	if got := treeLines(t, dst); got != want {
		t.Fatalf("in the VM:\n%s\nwant:\n%s", got, want)
	}

	if code := e.run("cp", "-r", "--format", "json", src, ":"+dst); code != 0 {
		t.Fatalf("cp -r into an existing directory: exit %d: %s", code, e.errOut)
	}
	var res api.CopyTreeResult
	if err := decodeStrict(e.out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, e.out)
	}
	if res.Path != filepath.Join(dst, "proj") || res.Files != 3 || res.Dirs != 4 || res.Symlinks != 2 ||
		res.Bytes == 0 || res.Skipped != 1 || res.Src != src || res.Dst != ":"+dst {
		t.Fatalf("result %+v", res)
	}
	if got := treeLines(t, res.Path); got != want {
		t.Fatalf("in the VM's existing directory:\n%s\nwant:\n%s", got, want)
	}

	back := filepath.Join(t.TempDir(), "back")
	if code := e.run("cp", "-r", ":"+dst, back); code != 0 {
		t.Fatalf("cp -r out of the VM: exit %d: %s", code, e.errOut)
	}
	// The copy of the copy holds the first copy's tree and, in proj/, the second.
	if got := treeLines(t, filepath.Join(back, "proj")); got != want {
		t.Fatalf("back on the host:\n%s\nwant:\n%s", got, want)
	}
	if l, _ := os.Readlink(filepath.Join(back, "passwd")); l != "/etc/passwd" {
		t.Fatalf("the outside link came back as %q", l)
	}
}

// TestCopyTreeHostileGuest: what a malicious guest sends lands under the
// destination or is refused; nothing outside it is written.
func TestCopyTreeHostileGuest(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	for _, tt := range []struct {
		name    string
		entries []tar.Header
	}{
		{"through a link out", []tar.Header{
			{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5},
		}},
		{"dot-dot", []tar.Header{{Name: "../outside/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}}},
		{"absolute", []tar.Header{{Name: outside + "/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.d.hostileTree = func() io.Reader {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				for _, h := range tt.entries {
					tw.WriteHeader(&h)
					if h.Size > 0 {
						io.WriteString(tw, "pwned")
					}
				}
				tw.Close()
				return &buf
			}
			dst := filepath.Join(base, "dst-"+strings.ReplaceAll(tt.name, " ", "-"))
			if code := e.run("cp", "-r", ":/root/tree", dst); code != ExitInvalid {
				t.Fatalf("exit %d, want %d: %s", code, ExitInvalid, e.errOut)
			}
			t.Logf("%s", e.errOut)
			if !strings.Contains(e.errOut.String(), "refused") {
				t.Errorf("message: %s", e.errOut)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("written outside the destination: %v", ents)
			}
		})
	}
}

// TestCopyTreeRefusals: what -r does not take, and a directory without -r.
func TestCopyTreeRefusals(t *testing.T) {
	e := newEnv(t)
	e.d.withGuest(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cp", "-r", "-", ":/tmp/x"}, ExitUsage, "one file"},
		{[]string{"cp", "-r", ":" + dir, "-"}, ExitUsage, "one file"},
		{[]string{"cp", "-r", file, ":" + dir + "/x"}, ExitInvalid, "without -r"},
		{[]string{"cp", "-r", ":" + file, filepath.Join(dir, "y")}, ExitInvalid, "without -r"},
		{[]string{"cp", "-r", ":" + dir, file}, ExitInvalid, "is a file"},
		{[]string{"cp", "-r", dir, ":" + file}, ExitInvalid, "is a file"},
		{[]string{"cp", "-r", filepath.Join(dir, "missing"), ":/tmp/x"}, ExitNotFound, "missing"},
		{[]string{"cp", dir, ":/tmp/x"}, ExitInvalid, "vers cp -r"},
	}
	for _, tt := range tests {
		code := e.run(tt.args...)
		t.Logf("%v: %s", tt.args, e.errOut)
		if code != tt.code || !strings.Contains(e.errOut.String(), tt.want) {
			t.Errorf("%v: exit %d, %q; want %d, %q", tt.args, code, e.errOut, tt.code, tt.want)
		}
	}
}

// TestCopyTreeNoSpace: a full VM filesystem exits 8 and says the files
// copied before stay.
func TestCopyTreeNoSpace(t *testing.T) {
	e := newEnv(t)
	e.d.withGuest(t)
	guest := t.TempDir()
	if err := syscall.Mount("tmpfs", guest, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(guest, syscall.MNT_DETACH) })
	src := filepath.Join(t.TempDir(), "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("x"), 4<<20), 0o644)
	if code := e.run("cp", "-r", src, ":"+guest+"/copy"); code != ExitNoSpace {
		t.Fatalf("exit %d, want %d: %s", code, ExitNoSpace, e.errOut)
	}
	if !strings.Contains(e.errOut.String(), "full") || !strings.Contains(e.errOut.String(), "stay") {
		t.Errorf("message: %s", e.errOut)
	}
}

// TestCopyTreeProgress: the progress line redraws itself with what has
// moved, and is cleared at the end.
func TestCopyTreeProgress(t *testing.T) {
	if got := progressLine(3<<20, 2*time.Second); got != "copying… 3.0 MiB (1.5 MiB/s)" {
		t.Fatalf("line %q", got)
	}
	var moved atomic.Int64
	moved.Store(5 << 20)
	w := &lockedBuffer{}
	stop := showProgress(w, &moved, time.Now(), time.Millisecond)
	for !strings.Contains(w.String(), "5.0 MiB") {
		runtime.Gosched()
	}
	stop()
	if out := w.String(); !strings.HasSuffix(out, "\r\033[K") {
		t.Fatalf("not cleared: %q", out)
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
