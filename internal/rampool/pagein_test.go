package rampool

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// testFile is a file of n pages in a fresh directory, opened read-write.
func testFile(t *testing.T, pages int) (*os.File, int) {
	t.Helper()
	page := os.Getpagesize()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "vm.ram"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(make([]byte, pages*page)); err != nil {
		t.Fatal(err)
	}
	return f, page
}

func TestMapped(t *testing.T) {
	f, page := testFile(t, 64)
	// Mapped from its eighth page on, as QEMU maps a RAM file from 0; the
	// pages are written, so no fault maps pages around them.
	m, err := unix.Mmap(int(f.Fd()), int64(8*page), 48*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	for _, p := range []int{0, 1, 2, 30} {
		m[p*page] = 1
	}
	got, err := Mapped(os.Getpid(), f.Name())
	if err != nil {
		t.Fatal(err)
	}
	p := int64(page)
	want := []Range{{Off: 8 * p, Len: 3 * p}, {Off: 38 * p, Len: p}}
	if !slices.Equal(got, want) {
		t.Errorf("Mapped = %v, want %v", got, want)
	}
	if _, err := Mapped(os.Getpid(), f.Name()+".not"); err == nil {
		t.Error("Mapped of a file the process does not map succeeded")
	}
}

// resident is which of a file's first n pages are in memory.
func resident(t *testing.T, f *os.File, n, page int) []bool {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, n*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, n)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	out := make([]bool, n)
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

func TestPrefetch(t *testing.T) {
	f, page := testFile(t, 256)
	if OnTmpfs(filepath.Dir(f.Name())) {
		t.Skip("a tmpfs file is always in memory")
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if r := resident(t, f, 256, page); slices.Contains(r, true) {
		t.Skip("this file system keeps the pages in memory")
	}
	p := int64(page)
	if err := Prefetch(f.Name(), []Range{{Off: 16 * p, Len: 4 * p}, {Off: 200 * p, Len: p}, {Off: 1000 * p, Len: p}}); err != nil {
		t.Fatal(err)
	}
	want := make([]bool, 256)
	for _, i := range []int{16, 17, 18, 19, 200} {
		want[i] = true
	}
	// The reads are started, not waited for.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := resident(t, f, 256, page)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Prefetch, pages in memory: %v, want %v", pagesOf(got), pagesOf(want))
		}
	}
}

func pagesOf(r []bool) []int {
	var out []int
	for i, v := range r {
		if v {
			out = append(out, i)
		}
	}
	return out
}

func TestSetReadAheadOnlyOnThePool(t *testing.T) {
	dir := t.TempDir()
	if err := setReadAhead(dir, filepath.Join(dir, imageName), 0); err == nil {
		t.Error("setReadAhead on a directory that is no mount point succeeded")
	}
	if err := setReadAhead("/", filepath.Join(dir, imageName), 0); err == nil {
		t.Error("setReadAhead on a file system not on the pool's loop device succeeded")
	}
}
