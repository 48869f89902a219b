package rampool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/poll"
)

func TestPlainDirectoryIsUsedAsItIs(t *testing.T) {
	if !OnTmpfs("/dev/shm") {
		t.Skip("no tmpfs at /dev/shm")
	}
	base, err := os.MkdirTemp("/dev/shm", "vers-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "ram")
	p, err := Ensure(context.Background(), dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != dir {
		t.Fatalf("dir %q", p.Dir)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("RAM directory not made: %v", err)
	}
	if p.Reflink != CanClone(dir) {
		t.Fatalf("Reflink %v, but CanClone says %v", p.Reflink, !p.Reflink)
	}
}

// TestPool makes a pool of its own (root, loop devices and mkfs.xfs needed),
// and checks what branching relies on: a clone is equal to its source at
// once, costs no space until written, and neither side sees the other's
// writes afterwards; deleted files give their space back to the host.
func TestRAMOnDiskIsRefused(t *testing.T) {
	dir := t.TempDir()
	if OnTmpfs(dir) || CanClone(dir) {
		t.Skip("the temporary directory is in memory or can clone files")
	}
	_, err := Ensure(context.Background(), filepath.Join(dir, "ram"), "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "VERS_RAM_DIR") {
		t.Fatalf("RAM on disk: %v", err)
	}
}

func TestPool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		t.Skip("needs mkfs.xfs (xfsprogs)")
	}
	base := t.TempDir()
	dir, backing := filepath.Join(base, "ram"), filepath.Join(base, "pool")
	var logs bytes.Buffer
	p, err := Ensure(context.Background(), dir, backing, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmount(t, dir)
		if dev, _ := loopFor(context.Background(), filepath.Join(backing, imageName)); dev != "" {
			exec.Command("losetup", "-d", dev).Run()
		}
		unmount(t, backing)
	})
	if !p.Reflink {
		t.Fatalf("no reflink pool was made:\n%s", logs.String())
	}
	img := filepath.Join(backing, imageName)
	dev, _ := loopFor(context.Background(), img)
	if b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "queue", "read_ahead_kb")); err != nil ||
		strings.TrimSpace(string(b)) != strconv.Itoa(ReadAheadKiB) {
		t.Errorf("the pool's device %s reads ahead %q KiB (%v), want %d", dev, b, err, ReadAheadKiB)
	}
	hostBytes := func() int64 {
		var st unix.Stat_t
		if err := unix.Stat(img, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}

	src := filepath.Join(dir, "vm.ram")
	data := bytes.Repeat([]byte("guest page "), 64<<20/11)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Flush(src); err != nil {
		t.Fatal(err)
	}
	used0, _ := Used(dir)
	host0 := hostBytes()

	snap := filepath.Join(dir, "snap.ram")
	if err := Clone(src, snap); err != nil {
		t.Fatal(err)
	}
	if err := Clone(src, snap); err == nil {
		t.Fatal("Clone onto an existing file succeeded")
	}
	if used, _ := Used(dir); used-used0 > 4<<20 {
		t.Fatalf("a clone of 64 MiB took %d bytes", used-used0)
	}
	if got, _ := os.ReadFile(snap); !bytes.Equal(got, data) {
		t.Fatal("the clone differs from its source")
	}

	// A clone over a file that a process already maps (a child's QEMU
	// started before the snapshot was taken) is what that process reads
	// next, including pages it read before.
	early := filepath.Join(dir, "early.ram")
	ef, err := os.OpenFile(early, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := ef.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	mapped, err := unix.Mmap(int(ef.Fd()), 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	ef.Close()
	if err != nil {
		t.Fatal(err)
	}
	if mapped[0] != 0 || mapped[len(data)-1] != 0 {
		t.Fatal("a new file is not zero")
	}
	if err := CloneOver(snap, early); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mapped, data) {
		t.Fatal("a mapping of the file cloned over does not read the clone")
	}
	unix.Munmap(mapped)
	os.Remove(early)
	if err := CloneOver(snap, filepath.Join(dir, "absent.ram")); err == nil {
		t.Fatal("CloneOver made a file that did not exist")
	}

	// Writes on one side are not seen on the other.
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("PARENT"), 4096)
	f.Close()
	Flush(src)
	if got, _ := os.ReadFile(snap); !bytes.Equal(got, data) {
		t.Fatal("a write to the source reached the clone")
	}
	if got, _ := os.ReadFile(src); !bytes.Equal(got[4096:4102], []byte("PARENT")) {
		t.Fatal("the source lost its write")
	}

	// A second Ensure finds the pool as it is.
	p2, err := Ensure(context.Background(), dir, backing, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || !p2.Reflink {
		t.Fatalf("second Ensure: %+v, %v", p2, err)
	}

	os.Remove(src)
	os.Remove(snap)
	NewReturner(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Kick()
	// The filesystem discards freed blocks in the background, after its log
	// is written.
	var host int64
	for i := 0; i < 100; i++ {
		if host = hostBytes(); host <= host0-32<<20 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("deleting 64 MiB of RAM files gave back only %d bytes to the host (%d -> %d)", host0-host, host0, host)
}

// unmount unmounts dir before the test's directory is removed: a
// filesystem just used can be busy for a moment (EBUSY), so it is tried
// again until it is not, for a while.
func unmount(t *testing.T, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		err := unix.Unmount(dir, 0)
		return err == nil || errors.Is(err, unix.EINVAL), nil // EINVAL: not mounted
	})
	if err != nil {
		t.Errorf("unmount %s: still busy", dir)
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}
