package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mount is one filesystem the userland expects.
type mount struct {
	src, dir, fstype string
	flags            uintptr
	data             string
}

// rootMounts are mounted in order, each unless something is mounted there already.
var rootMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// MountAll mounts what a Debian userland needs and remounts / read-write.
func MountAll(logf func(string, ...any)) {
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT, ""); err != nil {
		logf("remount / read-write: %v", err)
	}
	for _, m := range rootMounts {
		os.MkdirAll(m.dir, 0o755)
		if isMountpoint(m.dir) {
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil {
			logf("mount %s on %s: %v", m.fstype, m.dir, err)
		}
	}
	// With a private devpts instance, /dev/ptmx must lead to it.
	if fi, err := os.Lstat("/dev/ptmx"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		os.Remove("/dev/ptmx")
		os.Symlink("pts/ptmx", "/dev/ptmx")
	}
	for link, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if _, err := os.Lstat(link); err != nil {
			os.Symlink(target, link)
		}
	}
}

// isMountpoint reports whether dir is on another device than its parent.
func isMountpoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// ext4IocResizeFs is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4IocResizeFs = 0x40086610

// GrowRoot grows the root ext4 filesystem online to fill its block device:
// the host makes the disk larger than the image's filesystem.
func GrowRoot(logf func(string, ...any)) error {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return err
	}
	sizeFile := fmt.Sprintf("/sys/dev/block/%d:%d/size", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(sizeFile)
	if err != nil {
		return fmt.Errorf("root device size: %w", err)
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("root device size %q: %w", b, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/", &fs); err != nil {
		return err
	}
	if fs.Type != unix.EXT4_SUPER_MAGIC || fs.Bsize <= 0 {
		return nil
	}
	blocks := blocksFor(sectors, uint64(fs.Bsize))
	if blocks <= fs.Blocks {
		return nil
	}
	f, err := os.Open("/")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4IocResizeFs, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("resize root to %d blocks: %w", blocks, errno)
	}
	var after unix.Statfs_t
	unix.Statfs("/", &after)
	logf("root filesystem size %d MiB", after.Blocks*uint64(after.Bsize)>>20)
	return nil
}

// blocksFor is how many filesystem blocks of size bsize fit in a device of
// 512-byte sectors.
func blocksFor(sectors, bsize uint64) uint64 {
	return sectors * 512 / bsize
}

// SetHostname sets the kernel hostname and keeps /etc/hostname and the
// 127.0.1.1 line of /etc/hosts in step, so the name resolves.
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return err
	}
	writeIfChanged("/etc/hostname", name+"\n")
	b, _ := os.ReadFile("/etc/hosts")
	writeIfChanged("/etc/hosts", hostsWith(string(b), name))
	return nil
}

// writeIfChanged writes text to path unless it holds it already: a guest
// reconnected to a restarted daemon keeps its files untouched.
func writeIfChanged(path, text string) {
	b, err := os.ReadFile(path)
	if err == nil && string(b) == text {
		return
	}
	Rewrite(path, []byte(text), len(b), 0o644)
}

// Rewrite writes data over the file at path, which holds old bytes, in
// place (it is created with perm if missing), and cuts off what is left
// of the old content. Not truncated to nothing first: ext4 writes back a
// file that was truncated to nothing and written again when it is closed
// (auto_da_alloc), and a rename over a file the same way, which in a
// branch child's handover cost the guest a round of block I/O — and, under
// TCG, the translation of all that code — for a few bytes.
func Rewrite(path string, data []byte, old int, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, perm)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if old > len(data) {
		if err := f.Truncate(int64(len(data))); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// hostsWith returns an /etc/hosts text whose 127.0.1.1 line names name.
func hostsWith(hosts, name string) string {
	var out []string
	found := false
	for _, l := range strings.Split(strings.TrimRight(hosts, "\n"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.1.1" {
			if found {
				continue
			}
			l, found = "127.0.1.1\t"+name, true
		}
		if l != "" || len(out) > 0 {
			out = append(out, l)
		}
	}
	if !found {
		out = append(out, "127.0.1.1\t"+name)
	}
	if !strings.Contains(hosts, "localhost") {
		out = append([]string{"127.0.0.1\tlocalhost"}, out...)
	}
	return strings.Join(out, "\n") + "\n"
}
