package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vers/internal/errdefs"
)

// TestDownloadReplacesOnlyWhenComplete: a download that fails part way
// leaves the old host file as it was and no temporary file beside it; one
// that completes replaces it.
func TestDownloadReplacesOnlyWhenComplete(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "db.sqlite")
	if err := os.WriteFile(dst, []byte("old contents"), 0o640); err != nil {
		t.Fatal(err)
	}
	cut := io.MultiReader(strings.NewReader("new, but cut"), failing{})
	if err := download(dst, 0o600, cut); err == nil {
		t.Fatal("a failed download succeeded")
	}
	if b, _ := os.ReadFile(dst); string(b) != "old contents" {
		t.Fatalf("the old file changed: %q", b)
	}
	onlyFile(t, dir, "db.sqlite")

	data := bytes.Repeat([]byte("x"), 300_000)
	if err := download(dst, 0o600, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dst)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) || st.Mode().Perm() != 0o640 {
		t.Fatalf("after the download: %d bytes, mode %v", len(b), st.Mode())
	}
	onlyFile(t, dir, "db.sqlite")
}

// TestDownloadNewFile: a new file gets the guest's mode, writable by its
// owner, less the umask; a failure leaves nothing.
func TestDownloadNewFile(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "new")
	if err := download(dst, 0o755, io.MultiReader(strings.NewReader("x"), failing{})); err == nil {
		t.Fatal("a failed download succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if err := download(dst, 0o555, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dst)
	if want := 0o755 &^ umask(); st.Mode().Perm() != want {
		t.Fatalf("mode %v, want %v", st.Mode().Perm(), want)
	}
}

func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != name {
		t.Fatalf("in %s: %v, want only %s", dir, ents, name)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection cut") }

func TestExitCodeNoSpace(t *testing.T) {
	if got := ExitCode(hostErr(&os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC})); got != ExitNoSpace {
		t.Fatalf("host disk full: exit %d, want %d", got, ExitNoSpace)
	}
	if got := ExitCode(errdefs.ErrNoSpace); got != ExitNoSpace {
		t.Fatalf("no space: exit %d, want %d", got, ExitNoSpace)
	}
}

func TestCopyEmptyRemotePath(t *testing.T) {
	f, _, _ := testFactory()
	root := NewRoot(f)
	root.SetArgs([]string{"cp", "file", "vm:"})
	if code := ExitCode(root.Execute()); code != ExitUsage {
		t.Fatalf("cp file vm: exit %d, want %d", code, ExitUsage)
	}
}
