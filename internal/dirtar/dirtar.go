// Package dirtar carries a directory tree as a tar stream, for vers cp -r:
// Write walks a tree and streams it, Extract writes a stream under a
// directory. The guest agent and the CLI both use it, one on each side.
//
// What it must never do: follow a symbolic link, out of the tree when it
// reads or out of the destination when it writes. An archive may come from
// an untrusted guest, so Extract treats every entry as hostile: an absolute
// name, a ".." component, a link that would lead a later entry elsewhere,
// are refused or confined by os.Root. Nothing is held in memory but one
// chunk of data and the list of directories whose times are set last.
//
// A tree holds regular files, directories and symbolic links (their target
// kept verbatim), each with its permissions and modification time. Owners
// are sent but not applied: a copy belongs to whoever makes it, as with
// cp -r. Hard links arrive as separate files. Named pipes, sockets and
// devices are sent as entries without data and skipped by Extract, which
// counts them.
package dirtar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Errors of Extract and Write. Compare with errors.Is.
var (
	// ErrUnsafe: an entry whose name or place would reach outside the
	// destination, or a type no Write produces (hard link).
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrNotDir: the source of Write is not a directory.
	ErrNotDir = errors.New("not a directory")
)

// Stats says what a copy held.
type Stats struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // file contents only
	// Skipped counts named pipes, sockets and devices, which are not
	// copied; SkippedNames holds the first maxSkippedNames of them.
	Skipped      int      `json:"skipped,omitempty"`
	SkippedNames []string `json:"skipped_names,omitempty"`
}

// maxSkippedNames bounds what a tree full of sockets makes Stats hold.
const maxSkippedNames = 20

func (s *Stats) skip(name string) {
	s.Skipped++
	if len(s.SkippedNames) < maxSkippedNames {
		s.SkippedNames = append(s.SkippedNames, name)
	}
}

// Write streams the directory dir to w as a tar archive, entries named
// relative to dir ("." is dir itself), parents before their content. It
// never follows a symbolic link in the tree: links are entries (dir itself
// may be one, to a directory, as a path given with a trailing slash). It stops when ctx ends.
// A failure leaves the archive without its end, so that a reader sees a
// cut stream rather than a short tree.
func Write(ctx context.Context, w io.Writer, dir string) (Stats, error) {
	var st Stats
	fi, err := os.Stat(dir)
	if err != nil {
		return st, err
	}
	if !fi.IsDir() {
		return st, fmt.Errorf("%s: %w", dir, ErrNotDir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	buf := make([]byte, 64<<10)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone since its directory was read
		}
		if err != nil {
			return err
		}
		return writeEntry(tw, root, name, fi, &st, buf)
	})
	if err != nil {
		return st, err
	}
	return st, tw.Close()
}

// writeEntry writes one entry of the tree.
func writeEntry(tw *tar.Writer, root *os.Root, name string, fi fs.FileInfo, st *Stats, buf []byte) error {
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = root.Readlink(name); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	hdr.Name = name
	hdr.Format = tar.FormatPAX // long names, nanosecond times
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	switch hdr.Typeflag {
	case tar.TypeDir:
		hdr.Name += "/"
		st.Dirs++
	case tar.TypeSymlink:
		st.Symlinks++
	case tar.TypeReg:
		return writeFile(tw, root, name, hdr, st, buf)
	default:
		st.skip(name)
		hdr.Size = 0
	}
	return tw.WriteHeader(hdr)
}

// writeFile writes a regular file's entry and data. The file is opened
// without following a link (it may have become one since the walk) and
// without waiting (it may have become a pipe).
func writeFile(tw *tar.Writer, root *os.Root, name string, hdr *tar.Header, st *Stats, buf []byte) error {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s changed from a file to %v while it was copied", name, fi.Mode().Type())
	}
	// The size the open file has now: a file that shrinks while it is sent
	// fails the copy, one that grows is sent up to this size.
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if n < hdr.Size {
		return fmt.Errorf("%s shrank from %d to %d bytes while it was copied", name, hdr.Size, n)
	}
	st.Files++
	st.Bytes += n
	return nil
}

// clean checks an entry's name and returns it relative to the destination
// ("." for the destination itself).
func clean(name string) (string, error) {
	if name == "" || path.IsAbs(name) {
		return "", fmt.Errorf("entry %q: absolute or empty name: %w", name, ErrUnsafe)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q: a name with \"..\": %w", name, ErrUnsafe)
		}
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return "", fmt.Errorf("entry %q: NUL in a name: %w", name, ErrUnsafe)
		}
	}
	return path.Clean(name), nil
}
