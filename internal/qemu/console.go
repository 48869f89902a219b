package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ConsoleCap is the size past which a running VM's console log is rotated:
// a guest that writes to its serial port in a loop fills it at about
// 0.8 MB/s here, so it must never grow without limit.
const ConsoleCap = 1 << 20

// OldSerialLog is where RotateConsole keeps the log's previous part.
func (c Config) OldSerialLog() string { return c.SerialLog() + ".1" }

// PasstLogCap bounds passt's log the same way: it says little (--quiet),
// but what it says a guest can provoke.
const PasstLogCap = 256 << 10

// RotateConsole keeps the console log of a running VM under about max
// bytes: once it is larger, its contents move to OldSerialLog (replacing
// the previous part) and it is truncated. It reports whether it rotated.
func RotateConsole(cfg Config, max int64) (bool, error) {
	rotated, err := rotateLog(cfg.SerialLog(), cfg.OldSerialLog(), max)
	if err != nil {
		return false, fmt.Errorf("rotate console log of vm %s: %w", cfg.Name, err)
	}
	return rotated, nil
}

// RotatePasstLog keeps passt's log under about max bytes, as RotateConsole
// does the console's; its previous part is PasstLog with ".1".
func RotatePasstLog(cfg Config, max int64) (bool, error) {
	rotated, err := rotateLog(cfg.PasstLog(), cfg.PasstLog()+".1", max)
	if err != nil {
		return false, fmt.Errorf("rotate passt log of vm %s: %w", cfg.Name, err)
	}
	return rotated, nil
}

// rotateLog moves the contents of log to old and truncates log once it is
// larger than max bytes.
//
// The writer (QEMU, passt) keeps the log open for as long as the VM runs and
// cannot be told to reopen it, so the file is copied and truncated rather
// than renamed. It was opened with O_APPEND, so the next write lands at the
// new end, not at its old offset. What is written between the copy and the
// truncation (microseconds) is lost; that is the price of a log that stays
// one file for its writer.
func rotateLog(log, old string, max int64) (bool, error) {
	f, err := os.OpenFile(log, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= max {
		return false, err
	}
	tmp, err := os.OpenFile(old+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	// Copy what was there at the Stat only: the guest writes on meanwhile.
	_, err = io.Copy(tmp, io.NewSectionReader(f, 0, fi.Size()))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), old)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return false, err
	}
	if err := f.Truncate(0); err != nil {
		return false, err
	}
	return true, nil
}

// ConsoleLog is the whole console log that is kept: the part RotateConsole
// moved aside, then the current one.
func (c Config) ConsoleLog() ([]byte, error) {
	old, err := os.ReadFile(c.OldSerialLog())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	cur, err := os.ReadFile(c.SerialLog())
	if err != nil {
		return old, err
	}
	return append(old, cur...), nil
}

// ConsoleTail is the end of the guest's console log (at most n bytes), for
// error messages about a guest that did not come up. Just after a rotation
// it takes the rest from the previous part.
func (c Config) ConsoleTail(n int64) string {
	cur := fileTail(c.SerialLog(), n)
	if int64(len(cur)) >= n {
		return cur
	}
	prev := fileTail(c.OldSerialLog(), n-int64(len(cur)))
	return strings.TrimSpace(prev + "\n" + cur)
}

// ConsoleEnd is the last n bytes of the console log that is kept (the
// part RotateConsole moved aside, then the current one), as they are; a
// VM that has written none yet has an empty log.
func (c Config) ConsoleEnd(n int64) ([]byte, error) {
	cur, err := tailBytes(c.SerialLog(), n)
	if err != nil {
		return nil, err
	}
	if int64(len(cur)) >= n {
		return cur, nil
	}
	prev, err := tailBytes(c.OldSerialLog(), n-int64(len(cur)))
	if err != nil {
		return nil, err
	}
	return append(prev, cur...), nil
}

// tailBytes is the last n bytes of path; nothing when it does not exist.
func tailBytes(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	return io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
}
