package qemu

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHugePagesHurt(t *testing.T) {
	for _, c := range []struct {
		accel, mem string
		want       bool
	}{
		{"tcg", "", true},
		{"tcg", "/dev/shm/vers/a.ram", true},
		{"kvm", "/dev/shm/vers/a.ram", true},
		{"kvm", "", false}, // anonymous RAM under KVM: huge pages back the guest
	} {
		if got := hugePagesHurt(Config{Accel: c.accel, MemPath: c.mem}); got != c.want {
			t.Errorf("hugePagesHurt(accel %s, memory file %q) = %v, want %v", c.accel, c.mem, got, c.want)
		}
	}
}

// madviseHuge advises huge pages on a fresh anonymous mapping, as QEMU does
// on guest RAM, and returns the error.
func madviseHuge() error {
	b, err := unix.Mmap(-1, 0, 4<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(b)
	return unix.Madvise(b, unix.MADV_HUGEPAGE)
}

// TestHelperMadvise is the process TestStartFiltered starts: it reports
// what madvise(MADV_HUGEPAGE) and another madvise returned in it.
func TestHelperMadvise(t *testing.T) {
	if os.Getenv("VERS_QEMU_HELPER_MADVISE") == "" {
		t.Skip("helper for TestStartFiltered")
	}
	b, _ := unix.Mmap(-1, 0, 4<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	other := unix.Madvise(b, unix.MADV_DONTNEED)
	os.Stdout.WriteString("huge=" + errText(madviseHuge()) + " other=" + errText(other) + "\n")
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestStartFiltered: a process started under noHugePages cannot advise
// huge pages (and can still give other advice), and the process that
// started it, every thread of it, still can.
func TestStartFiltered(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMadvise$")
	cmd.Env = append(os.Environ(), "VERS_QEMU_HELPER_MADVISE=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := startFiltered(cmd, noHugePages); err != nil {
		t.Fatal(err)
	}
	var got string
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "huge=") {
			got = sc.Text()
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if want := "huge=" + syscall.EPERM.Error() + " other=ok"; got != want {
		t.Errorf("filtered process reports %q, want %q", got, want)
	}
	// The filter went with its thread: no thread of this process has it.
	// Many goroutines at once, so that they run on many threads.
	errs := make(chan error, 64)
	for range cap(errs) {
		go func() { errs <- madviseHuge() }()
	}
	for range cap(errs) {
		if err := <-errs; errors.Is(err, syscall.EPERM) {
			t.Fatal("a thread of the starting process is filtered too")
		} else if err != nil {
			t.Skipf("madvise(MADV_HUGEPAGE) unsupported here: %v", err)
		}
	}
}
