package vm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

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

// prefault maps every page of the file at memPath into the address space of
// process pid (which maps it as guest RAM) by reading the mapping through
// /proc/PID/mem. A background snapshot first touches every guest page so it
// can write-protect it; in a VM whose RAM is a private file mapping that has
// never been touched that is ~0.4 s per GiB, inside the guest's pause. Done
// here, before the pause, it costs the pause nothing.
func prefault(pid int, memPath string) error {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return err
	}
	defer mem.Close()
	buf := make([]byte, 1<<20)
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[len(f)-1] != memPath {
			continue
		}
		var start, end uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil {
			continue
		}
		for off := start; off < end; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), end-off)
			if _, err := mem.ReadAt(buf[:n], int64(off)); err != nil {
				return err
			}
		}
	}
	return nil
}
