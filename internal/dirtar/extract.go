package dirtar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options says how Extract applies what an archive says.
type Options struct {
	// KeepSetid keeps the set-user-ID and set-group-ID bits. The guest
	// keeps them (its copier is root, who sent them); the host drops them
	// from files it did not choose.
	KeepSetid bool
}

// Extract writes the archive read from r under dir, which it creates (with
// its parents) if it is missing, and merges into if it exists. Every name
// is taken relative to dir, through an os.Root of it: no entry, however
// named, and no symbolic link an earlier entry made, can lead a write out
// of dir. An entry below a symbolic link, an absolute name or one with
// "..", a hard link, a sparse file are refused (ErrUnsafe), as is a
// directory in the way of a file.
//
// Each file is written to a temporary name beside it and renamed into
// place once whole, so a failure leaves whole files and never a part of
// one; what was extracted before a failure stays. Directories get their
// permissions and times last, deepest first, once their content is written.
// r must report a cut stream as an error, not as its end: a tar archive cut
// between two entries reads as a complete one.
func Extract(ctx context.Context, r io.Reader, dir string, opt Options) (Stats, error) {
	var st Stats
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()
	x := &extractor{root: root, opt: opt, st: &st, known: map[string]bool{".": true}, seen: map[string]int{}, buf: make([]byte, 64<<10)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read the archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return st, err
		}
	}
	return st, x.finishDirs()
}

type extractor struct {
	root *os.Root
	opt  Options
	st   *Stats
	// known are the directories this extraction made or checked: real
	// directories, which it never replaces.
	known map[string]bool
	// dirs get their mode and times at the end, in reverse order; seen
	// indexes them by name, so that an archive repeating one directory
	// cannot make the list grow without making directories.
	dirs []dirTimes
	seen map[string]int
	buf  []byte
}

type dirTimes struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

func (x *extractor) entry(hdr *tar.Header, data io.Reader) error {
	name, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	for k := range hdr.PAXRecords {
		// A sparse file expands to a size its archive does not pay for
		// (a petabyte of holes in a few bytes); Write never makes one.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("entry %q: sparse files are not supported: %w", hdr.Name, ErrUnsafe)
		}
	}
	if name == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("entry %q: the destination itself can only be a directory: %w", hdr.Name, ErrUnsafe)
	}
	if err := x.parents(name); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name, hdr)
	case tar.TypeReg:
		return x.file(name, hdr, data)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		x.st.skip(name)
		return nil
	case tar.TypeLink:
		return fmt.Errorf("entry %q: hard links are not supported: %w", hdr.Name, ErrUnsafe)
	}
	return fmt.Errorf("entry %q: type %q is not supported: %w", hdr.Name, hdr.Typeflag, ErrUnsafe)
}

// parents makes sure every directory above name is a real directory under
// the root, making the missing ones: an entry below a symbolic link is
// refused, whether the link points inside the destination or not.
func (x *extractor) parents(name string) error {
	dir := path.Dir(name)
	if x.known[dir] {
		return nil
	}
	if err := x.parents(dir); err != nil {
		return err
	}
	fi, err := x.root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := x.root.Mkdir(dir, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("entry %q: %s is a symbolic link; nothing is written through one: %w", name, dir, ErrUnsafe)
	case !fi.IsDir():
		return fmt.Errorf("entry %q: %s is not a directory: %w", name, dir, ErrUnsafe)
	}
	x.known[dir] = true
	return nil
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if !x.known[name] {
		fi, err := x.root.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Writable until its content is in; its own mode comes last.
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.IsDir():
		default:
			// A file or a link where the directory goes: the copy wins,
			// as it does over a file.
			if err := x.root.Remove(name); err != nil {
				return err
			}
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		}
		x.known[name] = true
	}
	d := dirTimes{name: name, mode: x.mode(hdr), mtime: hdr.ModTime}
	if i, ok := x.seen[name]; ok {
		x.dirs[i] = d
		return nil
	}
	x.seen[name] = len(x.dirs)
	x.dirs = append(x.dirs, d)
	x.st.Dirs++
	return nil
}

// inTheWay refuses to replace a directory by a file or a link.
func (x *extractor) inTheWay(name string) error {
	if x.known[name] {
		return fmt.Errorf("entry %q: a directory is in the way: %w", name, ErrUnsafe)
	}
	if fi, err := x.root.Lstat(name); err == nil && fi.IsDir() {
		return fmt.Errorf("entry %q: a directory is in the way: %w", name, ErrUnsafe)
	}
	return nil
}

// file writes a regular file through a temporary name, renamed over name
// (which replaces a link there, never what it points to) once complete.
func (x *extractor) file(name string, hdr *tar.Header, data io.Reader) (err error) {
	if err := x.inTheWay(name); err != nil {
		return err
	}
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".vers-"+strconv.FormatUint(rand.Uint64(), 36))
	f, err := x.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			x.root.Remove(tmp)
		}
	}()
	n, err := io.CopyBuffer(f, data, x.buf)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := f.Chmod(x.mode(hdr)); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := x.root.Chtimes(tmp, atime(hdr), hdr.ModTime); err != nil {
		return err
	}
	if err := x.root.Rename(tmp, name); err != nil {
		return err
	}
	x.st.Files++
	x.st.Bytes += n
	return nil
}

// symlink makes a link with the archive's target, verbatim: it may point
// anywhere, since nothing is written through it.
func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if err := x.inTheWay(name); err != nil {
		return err
	}
	if err := x.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := x.root.Symlink(hdr.Linkname, name); err != nil {
		return err
	}
	if err := x.lutimes(name, atime(hdr), hdr.ModTime); err != nil {
		return err
	}
	x.st.Symlinks++
	return nil
}

// lutimes sets the times of the link name itself, relative to its parent
// opened through the root.
func (x *extractor) lutimes(name string, at, mt time.Time) error {
	parent, err := x.root.OpenFile(path.Dir(name), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if err := unix.UtimesNanoAt(int(parent.Fd()), path.Base(name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "lutimes", Path: name, Err: err}
	}
	return nil
}

// finishDirs gives each directory its mode and times, deepest first, so
// that writing into one no longer changes its time and a read-only one was
// writable while it was filled.
func (x *extractor) finishDirs() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if err := x.root.Chmod(d.name, d.mode); err != nil {
			return err
		}
		if err := x.root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// mode is the permissions an entry gets.
func (x *extractor) mode(hdr *tar.Header) fs.FileMode {
	m := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if !x.opt.KeepSetid {
		m &^= fs.ModeSetuid | fs.ModeSetgid
	}
	return m
}

func atime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}
