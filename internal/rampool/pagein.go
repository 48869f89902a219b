package rampool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// A child's RAM file shares its blocks with its snapshot but not its page
// cache: each page the child's guest touches is read through the pool's
// loop device, at the fault, while the vCPU waits. Two things keep that
// cheap. The device reads little more than a fault asks for
// (ReadAheadKiB): more read-ahead made fewer, larger reads but filled
// every child's page cache with pages its guest never touched. And the
// pages a child's guest touches as it is handed over are nearly the same
// for every child of one VM — the guest kernel's and the agent's — so the
// daemon notes them in one child (Mapped) and has them read for the next
// before its guest runs (Prefetch), while its QEMU loads the device
// state: its faults then find them in memory.

// ReadAheadKiB is the pool device's read-ahead, for the pages a child
// touches that no earlier child noted: a fault reads 16 KiB. With none,
// the first child of a VM (nothing noted yet) took ~110 ms more to hand
// over than with the default 128 KiB, at 16 KiB ~40 ms more; an idle
// child's PSS was 38, 43 and 57 MiB (default 512 MiB VM).
const ReadAheadKiB = 16

// Range is a run of bytes of a RAM file: Off and Len are multiples of the
// page size.
type Range struct{ Off, Len int64 }

// setReadAhead sets the read-ahead of the loop device dir is mounted
// from, if that device's file is img.
func setReadAhead(dir, img string, kib int) error {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil || len(infos) == 0 {
		return fmt.Errorf("%s is not mounted (%v)", dir, err)
	}
	dev := filepath.Base(infos[0].Source)
	sys := filepath.Join("/sys/block", dev)
	if b, err := os.ReadFile(filepath.Join(sys, "loop", "backing_file")); err != nil || strings.TrimSpace(string(b)) != img {
		return fmt.Errorf("%s is mounted from %s, not a loop device of %s", dir, infos[0].Source, img)
	}
	return os.WriteFile(filepath.Join(sys, "queue", "read_ahead_kb"), []byte(strconv.Itoa(kib)), 0)
}

// Mapped returns the ranges of the file path that process pid has in its
// page tables: the pages its guest touched since it started, and those
// the kernel mapped around them from memory at a read fault (fault-around,
// up to 64 KiB). Mapped pages, not pages in memory: pages read ahead for a
// process but never touched do not come back from it.
func Mapped(pid int, path string) ([]Range, error) {
	start, end, off, err := mapping(pid, path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	r := bufio.NewReaderSize(io.NewSectionReader(f, int64(start/uint64(page))*8, int64((end-start)/uint64(page))*8), 1<<16)
	var out []Range
	var entry [8]byte
	for i := int64(0); ; i++ {
		if _, err := io.ReadFull(r, entry[:]); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("pagemap of %d: %w", pid, err)
		}
		if binary.LittleEndian.Uint64(entry[:])&(1<<63) == 0 { // not present
			continue
		}
		at := off + i*page
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == at {
			out[n-1].Len += page
		} else {
			out = append(out, Range{Off: at, Len: page})
		}
	}
	return out, nil
}

// mapping finds process pid's mapping of path in /proc/PID/maps: its
// addresses and the file offset it starts at.
func mapping(pid int, path string) (start, end uint64, off int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		o, err3 := strconv.ParseInt(fields[2], 16, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return 0, 0, 0, fmt.Errorf("maps of %d: %q: %w", pid, sc.Text(), err)
		}
		return s, e, o, nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, err
	}
	return 0, 0, 0, fmt.Errorf("process %d does not map %s", pid, path)
}

// Prefetch starts reading ranges of the file path into memory and returns
// without waiting for them (POSIX_FADV_WILLNEED). Ranges past the file's
// end are ignored.
func Prefetch(path string, ranges []Range) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, r := range ranges {
		if err := unix.Fadvise(int(f.Fd()), r.Off, r.Len, unix.FADV_WILLNEED); err != nil {
			return fmt.Errorf("prefetch %s: %w", filepath.Base(path), err)
		}
	}
	return nil
}
