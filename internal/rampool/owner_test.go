package rampool

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// ownedFile makes a RAM file in dir, owned by home unless home is "".
func ownedFile(t *testing.T, dir, name, home string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if home == "" {
		return path
	}
	if err := Own(path, home); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			t.Skipf("no extended attributes here: %v", err)
		}
		t.Fatal(err)
	}
	return path
}

func TestOwner(t *testing.T) {
	dir := t.TempDir()
	owned := ownedFile(t, dir, "a.ram", "/var/lib/vers-a")
	plain := ownedFile(t, dir, "b.ram", "")
	if h, err := Owner(owned); err != nil || h != "/var/lib/vers-a" {
		t.Fatalf("owner %q, %v", h, err)
	}
	if h, err := Owner(plain); err != nil || h != "" {
		t.Fatalf("a file without owner: %q, %v", h, err)
	}
	if _, err := Owner(filepath.Join(dir, "none.ram")); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("a missing file: %v", err)
	}
	if err := Own(filepath.Join(dir, "none.ram"), "/x"); err == nil {
		t.Fatal("owning a missing file succeeded")
	}
}

// TestHelperMapper is not a test: run by mapFile, it maps the file named in
// its environment, says so and waits for its stdin to close.
func TestHelperMapper(t *testing.T) {
	path := os.Getenv("VERS_TEST_MAP")
	if path == "" {
		t.Skip("helper process")
	}
	f, err := os.Open(path)
	if err != nil {
		os.Exit(2)
	}
	if _, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("mapped\n")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// mapFile starts a process that maps path, and returns once it has.
func mapFile(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMapper$")
	cmd.Env = append(os.Environ(), "VERS_TEST_MAP="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "mapped\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	return cmd
}

func TestSweepOrphans(t *testing.T) {
	dir := t.TempDir()
	live := t.TempDir()
	deleted := filepath.Join(t.TempDir(), "gone-home")
	orphan := ownedFile(t, dir, "vm1.ram", deleted)
	orphan2 := ownedFile(t, dir, "snap-s1.ram", deleted)
	kept := ownedFile(t, dir, "vm2.ram", live)
	unowned := ownedFile(t, dir, "vm3.ram", "")

	vm := mapFile(t, orphan)     // a VM of the deleted home: ended
	other := mapFile(t, orphan2) // not a VM: left running
	keptVM := mapFile(t, kept)   // a VM of a live home: untouched
	endable = func(pid int) bool { return pid == vm.Process.Pid || pid == keptVM.Process.Pid }
	defer func() { endable = isQEMU }()

	if got := SweepOrphans(dir, slog.New(slog.NewTextHandler(io.Discard, nil))); len(got) != 2 {
		t.Fatalf("removed %q, want the two files of the deleted home", got)
	}
	for _, p := range []string{orphan, orphan2} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still there: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{kept, unowned} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	err := vm.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the VM mapping the orphan: %v, want killed", err)
	}
	for _, c := range []*exec.Cmd{other, keptVM} {
		if err := c.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("pid %d was ended: %v", c.Process.Pid, err)
		}
	}
	if got := SweepOrphans(dir, slog.New(slog.NewTextHandler(io.Discard, nil))); len(got) != 0 {
		t.Fatalf("a second sweep removed %q", got)
	}
}

// TestSweepOrphansStepsFailing: a mapper that exits before it is ended, and a
// file that cannot be removed, do not stop the sweep; only what was removed
// is reported.
func TestSweepOrphansStepsFailing(t *testing.T) {
	dir := t.TempDir()
	deleted := filepath.Join(t.TempDir(), "gone-home")
	stuck := ownedFile(t, dir, "vm1.ram", deleted)
	freed := ownedFile(t, dir, "vm2.ram", deleted)

	exiting := mapFile(t, freed)
	endable = func(pid int) bool {
		if pid != exiting.Process.Pid {
			return false
		}
		// It exits between being found and being ended.
		exiting.Process.Kill()
		exiting.Wait()
		return true
	}
	removeFile = func(path string) error {
		if path == stuck {
			return unix.EBUSY
		}
		return os.Remove(path)
	}
	defer func() { endable, removeFile = isQEMU, os.Remove }()

	got := SweepOrphans(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(got) != 1 || got[0] != freed {
		t.Fatalf("removed %q, want only %s", got, filepath.Base(freed))
	}
	if _, err := os.Stat(stuck); err != nil {
		t.Fatalf("the file that could not be removed: %v", err)
	}
	if _, err := os.Stat(freed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is still there: %v", filepath.Base(freed), err)
	}
}
