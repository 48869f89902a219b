package image

import (
	"fmt"
	"io"
	"path"
	"strings"
)

// CPIOWriter writes an uncompressed cpio archive in the "newc" format, the
// one the Linux kernel unpacks as an initramfs. Entries are written in the
// order given; parents must come before their children.
type CPIOWriter struct {
	w     io.Writer
	ino   uint32
	mtime int64
	err   error
}

// NewCPIO returns a writer that stamps every entry with mtime (seconds since
// the epoch), so the same inputs always give the same bytes.
func NewCPIO(w io.Writer, mtime int64) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1, mtime: mtime}
}

const (
	cpioMagic     = "070701"
	cpioTrailer   = "TRAILER!!!"
	cpioHeaderLen = 110
	modeDir       = 0o040000
	modeFile      = 0o100000
	modeSymlink   = 0o120000
	modeCharDev   = 0o020000
)

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm uint32) error {
	return c.entry(name, modeDir|perm&0o7777, 2, 0, 0, nil)
}

// File adds a regular file with the given contents.
func (c *CPIOWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeFile|perm&0o7777, 1, 0, 0, data)
}

// Symlink adds a symbolic link name -> target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, 1, 0, 0, []byte(target))
}

// CharDev adds a character device node, e.g. /dev/console (5, 1), which the
// kernel opens for init's stdio before anything can create it.
func (c *CPIOWriter) CharDev(name string, perm uint32, major, minor uint32) error {
	return c.entry(name, modeCharDev|perm&0o7777, 1, major, minor, nil)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	c.ino = 0
	c.mtime = 0
	return c.write(cpioTrailer, 0, 1, 0, 0, nil)
}

func (c *CPIOWriter) entry(name string, mode, nlink, rmaj, rmin uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" || clean == cpioTrailer {
		return fmt.Errorf("cpio entry %q: %w", name, ErrInvalid)
	}
	c.ino++
	return c.write(clean, mode, nlink, rmaj, rmin, data)
}

func (c *CPIOWriter) write(name string, mode, nlink, rmaj, rmin uint32, data []byte) error {
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, c.ino, mode, 0, 0, nlink, uint32(c.mtime), len(data),
		0, 0, rmaj, rmin, len(name)+1, 0)
	buf := make([]byte, 0, cpioHeaderLen+len(name)+4+len(data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		c.err = fmt.Errorf("write cpio: %w", err)
	}
	return c.err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
