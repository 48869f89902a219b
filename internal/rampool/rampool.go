// Package rampool provides the filesystem that guest RAM lives on.
//
// A branch must freeze a running VM's RAM in a few milliseconds, let the
// parent write on, and give each child a RAM of its own that starts equal to
// the frozen one — without copying it. A tmpfs cannot share pages between two
// files, so there every frozen RAM is a full copy. A filesystem with reflinks
// can: cloning a file (FICLONE) shares all its blocks and costs milliseconds
// whatever its size; a block is copied only when one side writes it.
//
// So guest RAM lives in files on an XFS filesystem (reflink=1) that itself
// lives in memory: an image file on a tmpfs of its own, attached to a loop
// device. The tmpfs holds the XFS image only, so nothing else can fill it
// under the filesystem; the filesystem is mounted with discard, so blocks
// freed by deleted RAM files go back to the tmpfs, that is to the host.
//
// Ensure sets this up once per host (the first daemon does it; the others
// find it mounted). Where it cannot be done — not root, no loop device, no
// XFS — the RAM directory stays a plain directory and Reflink is false; the
// daemon then branches by copying RAM instead (see internal/vm).
package rampool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"
	"vers/internal/hostmem"

	"github.com/moby/sys/mountinfo"

	"golang.org/x/sys/unix"
)

// Pool is the RAM directory as the daemon found or made it.
type Pool struct {
	// Dir holds guest RAM files.
	Dir string
	// Reflink: files in Dir can be cloned (Clone), so branching shares RAM
	// blocks instead of copying them.
	Reflink bool
}

// The filesystem image, in the pool's own tmpfs, and the host-wide lock
// beside that tmpfs.
const (
	imageName = "ram.img"
	lockName  = "pool.lock"
)

// Ensure makes dir a reflink-capable RAM directory if it is not one already,
// with the filesystem image in backingDir. It never fails for want of a
// pool: the error it returns is only for a RAM directory that cannot be made
// at all; the reason a pool could not be made is logged, and Reflink is false.
func Ensure(ctx context.Context, dir, backingDir string, log *slog.Logger) (Pool, error) {
	p := Pool{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("RAM directory: %w", err)
	}
	if CanClone(dir) {
		p.Reflink = true
		readAhead(dir, backingDir, log)
		return p, nil
	}
	if backingDir == "" {
		return p, plainOK(dir)
	}
	if err := mountPool(ctx, dir, backingDir, log); err != nil {
		log.Warn("guest RAM cannot share blocks between branches: they will be copied", "dir", dir, "reason", err)
		return p, plainOK(dir)
	}
	p.Reflink = CanClone(dir)
	if !p.Reflink {
		log.Warn("the RAM filesystem was mounted but cannot clone files: branches will copy RAM", "dir", dir)
		return p, nil
	}
	readAhead(dir, backingDir, log)
	return p, nil
}

// readAhead sets the pool device's read-ahead (ReadAheadKiB), on every
// start: a pool made by an earlier daemon may have the device's default.
// Only the pool's own loop device, never the disk under a RAM directory
// of the user's; a device that refuses is only slower.
func readAhead(dir, backingDir string, log *slog.Logger) {
	if backingDir == "" {
		return
	}
	if err := setReadAhead(dir, filepath.Join(backingDir, imageName), ReadAheadKiB); err != nil {
		log.Warn("guest RAM filesystem: read-ahead left as it is", "dir", dir, "reason", err)
	}
}

// plainOK checks a RAM directory whose files cannot be cloned: guest RAM
// must then be on a tmpfs, the one file system on which QEMU can freeze a
// VM's RAM while it runs (write-protecting it) when RAM is a file.
func plainOK(dir string) error {
	if !OnTmpfs(dir) {
		return fmt.Errorf("RAM directory %s is on neither a tmpfs nor a file system that can clone files: guest RAM must live in memory; set VERS_RAM_DIR to a directory on a tmpfs such as /dev/shm, or leave it unset", dir)
	}
	return nil
}

// mountPool mounts a tmpfs at backingDir, an XFS image in it, and the image
// at dir, under a host-wide lock; whatever it made is undone on failure.
func mountPool(ctx context.Context, dir, backingDir string, log *slog.Logger) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("mounting a filesystem needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.xfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (packages util-linux, xfsprogs)", tool)
		}
	}
	if err := os.MkdirAll(backingDir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(backingDir), lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	if CanClone(dir) { // another daemon made it meanwhile
		return nil
	}
	// Mounting over RAM files would hide them from whoever manages them.
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return fmt.Errorf("%s is not empty: VMs made before use it", dir)
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if !IsMountpoint(backingDir) {
		size, err := memTotal()
		if err != nil {
			return err
		}
		if err := unix.Mount("vers-pool", backingDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
			"mode=0700,size="+strconv.FormatInt(size, 10)); err != nil {
			return fmt.Errorf("mount tmpfs at %s: %w", backingDir, err)
		}
		undo = append(undo, func() { unix.Unmount(backingDir, unix.MNT_DETACH) })
	}
	img := filepath.Join(backingDir, imageName)
	fresh := false
	if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
		var st unix.Statfs_t
		if err := unix.Statfs(backingDir, &st); err != nil {
			return err
		}
		// The filesystem is a little smaller than its tmpfs: the tmpfs must
		// never be the one to run out of space under it.
		size := int64(st.Blocks) * st.Bsize / 64 * 63 &^ (1<<20 - 1)
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			return err
		}
		undo = append(undo, func() { os.Remove(img) })
		if err := os.Truncate(img, size); err != nil {
			return err
		}
		fresh = true
	}
	dev, err := loopFor(ctx, img)
	if err != nil {
		return err
	}
	if where := mountedAt(dev); dev != "" && where != "" {
		return fmt.Errorf("the RAM filesystem %s is mounted at %s already", dev, where)
	}
	if dev == "" {
		var stderr strings.Builder
		cmd := exec.CommandContext(ctx, "losetup", "--find", "--show", img)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("losetup: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		dev = strings.TrimSpace(string(out))
		undo = append(undo, func() { exec.Command("losetup", "-d", dev).Run() })
	}
	if fresh {
		// -K: the image is sparse and new; discarding it first is wasted time.
		if out, err := exec.CommandContext(ctx, "mkfs.xfs", "-q", "-K", "-m", "reflink=1", "-L", "vers-ram", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("mkfs.xfs: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if err := unix.Mount(dev, dir, "xfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, "discard"); err != nil {
		return fmt.Errorf("mount %s at %s: %w", dev, dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	log.Info("guest RAM filesystem mounted", "dir", dir, "device", dev, "image", img)
	return nil
}

// loopFor returns the loop device already attached to img, or "".
func loopFor(ctx context.Context, img string) (string, error) {
	out, err := exec.CommandContext(ctx, "losetup", "--noheadings", "--output", "NAME", "--associated", img).Output()
	if err != nil {
		return "", fmt.Errorf("losetup --associated: %w", err)
	}
	if f := strings.Fields(string(out)); len(f) > 0 {
		return f[0], nil
	}
	return "", nil
}

// CanClone reports whether files in dir can be cloned: it tries.
func CanClone(dir string) bool {
	src, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return false
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		return false
	}
	dst, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return false
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}

// Clone makes dst a copy of src that shares all of src's blocks. dst must not
// exist. src must not change while it is cloned.
func Clone(src, dst string) error { return cloneTo(src, dst, os.O_CREATE|os.O_EXCL) }

// CloneOver makes the existing file dst a copy of src that shares all of
// src's blocks, as Clone does. dst may be mapped by a process that has not
// used it yet (a child's QEMU started before its snapshot was taken, which
// mapped an empty file): the filesystem writes back and unmaps dst's pages
// before it shares src's blocks, so the next access reads src's data.
func CloneOver(src, dst string) error { return cloneTo(src, dst, 0) }

// cloneTo opens dst with flags added to O_WRONLY and clones src into it; a
// dst it made is removed again if the clone fails.
func cloneTo(src, dst string, flags int) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY|flags, 0o600)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(d.Fd()), int(s.Fd())); err != nil {
		d.Close()
		if flags&os.O_CREATE != 0 {
			os.Remove(dst)
		}
		return fmt.Errorf("clone %s: %w", filepath.Base(src), err)
	}
	return d.Close()
}

// Flush writes a RAM file's dirty pages to the filesystem and waits. Cloning
// flushes too, but a clone made right after a flush has little left to write:
// a branch flushes while the guest still runs, so that its pause is short.
func Flush(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fdatasync(int(f.Fd()))
}

// GiveBack makes the filesystem return the blocks of RAM files deleted so
// far to the host now, not at its next log checkpoint (up to half a minute
// later). XFS frees a deleted file's blocks in a background worker (statfs
// nudges it) and may discard them only once that is in its log; FITRIM
// forces the whole log, then discards the free space. It writes no file's
// data.
func GiveBack(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// struct fstrim_range: start, len, minlen. Free runs under 64 KiB are
	// left: they are not worth a discard each.
	r := [3]uint64{0, ^uint64(0), 64 << 10}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.Fd(), fitrim, uintptr(unsafe.Pointer(&r))); e != 0 {
		return fmt.Errorf("FITRIM %s: %w", dir, e)
	}
	return nil
}

// fitrim is FITRIM, _IOWR('X', 121, struct fstrim_range).
const fitrim = 0xC0185879

// Returner gives the blocks of deleted RAM files back to the host in the
// background, soon after each Kick. XFS frees a deleted file's blocks in a
// background worker and discards them when its log next commits, so one
// GiveBack right after a delete may come too early: it is repeated a little
// later. Kicks that come meanwhile are folded into the next round.
type Returner struct {
	kick chan struct{}
}

// returnAfter are the delays, from a kick, of the GiveBack rounds.
var returnAfter = []time.Duration{0, 500 * time.Millisecond, 3 * time.Second}

// NewReturner starts the returner of dir; it runs as long as the process.
func NewReturner(dir string, log *slog.Logger) *Returner {
	r := &Returner{kick: make(chan struct{}, 1)}
	go func() {
		for range r.kick {
			start := time.Now()
			for _, d := range returnAfter {
				time.Sleep(time.Until(start.Add(d)))
				if err := GiveBack(dir); err != nil {
					log.Warn("give back freed RAM", "dir", dir, "err", err)
				}
			}
		}
	}()
	return r
}

// Kick asks for the blocks of files deleted so far to be given back.
func (r *Returner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default: // a round is already asked for
	}
}

// OnTmpfs reports whether dir is on a tmpfs.
func OnTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// ImageBytes is the host memory that the RAM filesystem whose image is in
// backingDir holds: the image's allocated bytes, each shared block counted
// once. ok is false when there is no image there.
func ImageBytes(backingDir string) (n int64, ok bool) {
	var st unix.Stat_t
	if unix.Stat(filepath.Join(backingDir, imageName), &st) != nil {
		return 0, false
	}
	return st.Blocks * 512, true
}

// Used is how many bytes the filesystem holding dir has in use: what its
// files cost the host, each shared block counted once.
func Used(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// IsMountpoint reports whether dir is a mount point.
func IsMountpoint(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	ok, err := mountinfo.Mounted(abs)
	return err == nil && ok
}

// mountedAt returns where the block device dev is mounted, or "".
func mountedAt(dev string) string {
	if dev == "" {
		return ""
	}
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Source != dev, false
	})
	if err != nil || len(infos) == 0 {
		return ""
	}
	return infos[0].Mountpoint
}

// memTotal is the host's RAM in bytes: the pool's tmpfs may grow to it (a
// tmpfs size is a cap, not a reservation).
func memTotal() (int64, error) { return hostmem.Total() }
