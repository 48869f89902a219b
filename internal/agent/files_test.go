package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/internal/errdefs"
)

// readAll reads path from the guest to the end.
func readAll(ctx context.Context, t *testing.T, c *Client, path string) ([]byte, FileInfo, error) {
	t.Helper()
	rc, info, err := c.ReadFile(ctx, path)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, info, err
}

// TestReadFileZeroSizeHasContent: files in /proc say size 0 and still have
// content; the data goes to the end, not to the size.
func TestReadFileZeroSizeHasContent(t *testing.T) {
	_, c := newFixture(t)
	want, err := os.ReadFile("/proc/version")
	if err != nil || len(want) == 0 {
		t.Skip("needs /proc/version")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, info, err := readAll(ctx, t, c, "/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 0 || !bytes.Equal(got, want) {
		t.Fatalf("size %d, got %q, want %q", info.Size, got, want)
	}
}

// TestReadFileGrowing: a file that grows after it was opened is sent whole.
func TestReadFileGrowing(t *testing.T) {
	f, c := newFixture(t)
	path := filepath.Join(f.home, "growing.log")
	first := bytes.Repeat([]byte("a"), 1<<20)
	if err := os.WriteFile(path, first, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, info, err := c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Nothing read yet: the stream's window (far below 1 MiB at first)
	// holds the guest well before the end of what was there at open time.
	more := bytes.Repeat([]byte("b"), 1<<20)
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(more)
	w.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(first)) || !bytes.Equal(got, append(first, more...)) {
		t.Fatalf("size at open %d, got %d bytes, want %d", info.Size, len(got), len(first)+len(more))
	}
}

// TestReadFileRefusesNonRegular: a directory, a named pipe and a device are
// refused at once as invalid input; opening the pipe would wait forever.
func TestReadFileRefusesNonRegular(t *testing.T) {
	f, c := newFixture(t)
	fifo := filepath.Join(f.home, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{f.home, "is a directory"},
		{fifo, "is a named pipe"},
		{"/dev/null", "is a character device"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := readAll(ctx, t, c, tt.path)
		cancel()
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("read %s: %v, want invalid input saying %q", tt.path, err, tt.want)
		}
	}
	// The session still serves.
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFileOntoDirectory: a directory is never replaced by a file.
func TestWriteFileOntoDirectory(t *testing.T) {
	f, c := newFixture(t)
	dir := filepath.Join(f.home, "d")
	os.Mkdir(dir, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.WriteFile(ctx, dir, 0o644, bytes.NewReader(make([]byte, 4<<20)))
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("write onto a directory: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("the directory changed: %v %v", fi, err)
	}
}

// smallFS mounts a tmpfs of size bytes in a temporary directory.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestWriteFileNoSpace: a full destination fails at once with ErrNoSpace,
// leaves no temporary file, and the session serves on. Before, the guest
// stopped reading and the host wrote into a full window until yamux gave up
// on the stream five minutes later.
func TestWriteFileNoSpace(t *testing.T) {
	f, c := newFixture(t)
	dir := smallFS(t, "256k")
	path := filepath.Join(dir, "big.bin")
	for _, size := range []int{1 << 20, 16 << 20} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := c.WriteFile(ctx, path, 0o644, bytes.NewReader(make([]byte, size)))
		cancel()
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, errdefs.ErrNoSpace) {
			t.Fatalf("write %d bytes into 256 KiB: %v", size, err)
		}
		if !strings.Contains(err.Error(), "full") {
			t.Errorf("message does not say the filesystem is full: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v to fail", d)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("left behind: %v", ents)
		}
	}
	// The same session still carries files both ways.
	ok := filepath.Join(f.home, "ok.txt")
	if err := c.WriteFile(context.Background(), ok, 0, strings.NewReader("fine")); err != nil {
		t.Fatal(err)
	}
	if b, _, err := readAll(context.Background(), t, c, ok); err != nil || string(b) != "fine" {
		t.Fatalf("after no space: %q %v", b, err)
	}
}

// TestReadFileCancelStopsGuest: a reader that goes away (its context ends)
// makes the guest stop sending and close the file.
func TestReadFileCancelStopsGuest(t *testing.T) {
	f, c := newFixture(t)
	path := filepath.Join(f.home, "big.bin")
	if err := os.WriteFile(path, make([]byte, 32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, _, err := c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if !openInProcess(path) {
		t.Fatal("the guest does not hold the file open during the transfer")
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	rc.Close()
	waitUntil(t, "the guest closes the file", 5*time.Second, func() bool { return !openInProcess(path) })
}

// TestWriteFileCancelDropsTemp: a writer that goes away leaves the old file
// and no temporary file.
func TestWriteFileCancelDropsTemp(t *testing.T) {
	f, c := newFixture(t)
	path := filepath.Join(f.home, "dst.txt")
	os.WriteFile(path, []byte("old"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- c.WriteFile(ctx, path, 0o644, pr) }()
	pw.Write(make([]byte, 100_000))
	waitUntil(t, "a temporary file appears", 5*time.Second, func() bool { return temps(f.home) > 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("write after cancel: %v", err)
	}
	pw.Close()
	waitUntil(t, "the guest removes its temporary file", 5*time.Second, func() bool { return temps(f.home) == 0 })
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("the file changed: %q", b)
	}
}

// temps counts the temporary files of writes in progress in dir.
func temps(dir string) int {
	n := 0
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".vers-") {
			n++
		}
	}
	return n
}

// openInProcess reports whether this process (where the test server runs)
// has path open.
func openInProcess(path string) bool {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == path {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
