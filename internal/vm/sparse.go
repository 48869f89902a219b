package vm

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// punchZeroPages turns every all-zero 4 KiB page of the file at path into a
// hole, and returns how many bytes it freed.
//
// A snapshot's RAM file arrives fully allocated: QEMU checks each incoming
// zero page by reading it, and reading a hole of a shared tmpfs mapping
// allocates it. Most of a guest's RAM is never written, so most of the file
// is zero pages. Punching them is safe while children map the file
// copy-on-write: a hole reads as zeros, exactly what was there, and no one
// writes the file any more.
func punchZeroPages(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const page = 4096
	zero := make([]byte, page)
	buf := make([]byte, 1<<20)
	var freed, off int64
	runStart, runLen := int64(-1), int64(0)
	flush := func() error {
		if runLen > 0 {
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, runStart, runLen); err != nil {
				return err
			}
			freed += runLen
		}
		runStart, runLen = -1, 0
		return nil
	}
	for {
		n, err := f.ReadAt(buf, off)
		for p := 0; p+page <= n; p += page {
			if bytes.Equal(buf[p:p+page], zero) {
				if runStart < 0 {
					runStart = off + int64(p)
				}
				runLen += page
			} else if ferr := flush(); ferr != nil {
				return freed, ferr
			}
		}
		off += int64(n)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return freed, err
		}
	}
	return freed, flush()
}
