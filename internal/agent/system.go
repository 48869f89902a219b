package agent

import (
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vers/internal/agent/guest"
)

// LinuxSystem applies sync requests to the running kernel. Only PID 1 in a
// guest should use it: it moves the clock of whatever machine it runs on.
type LinuxSystem struct{}

var _ System = LinuxSystem{}

// SetTime sets the realtime clock.
func (LinuxSystem) SetTime(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Settimeofday(&tv)
}

// AddEntropy mixes b into the kernel's pool and credits it as entropy
// (RNDADDENTROPY), then forces the CRNG to reseed from the pool
// (RNDRESEEDCRNG). Without the reseed a clone keeps drawing from the CRNG
// state it inherited for up to a minute, so two clones of one VM would read
// the same bytes from /dev/urandom.
func (LinuxSystem) AddEntropy(b []byte) error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	req := entropyRequest(b)
	return fdControl(f, func(fd int) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.RNDADDENTROPY,
			uintptr(unsafe.Pointer(&req[0])))
		if errno != 0 {
			return errno
		}
		if _, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.RNDRESEEDCRNG, 0); errno != 0 {
			return fmt.Errorf("reseed crng: %w", errno)
		}
		return nil
	})
}

// entropyRequest builds struct rand_pool_info: entropy_count (bits),
// buf_size (bytes), then the bytes. The slice is made of uint32 so the
// kernel gets an aligned structure.
func entropyRequest(b []byte) []uint32 {
	words := make([]uint32, 2+(len(b)+3)/4)
	words[0] = uint32(len(b) * 8)
	words[1] = uint32(len(b))
	if len(b) == 0 {
		return words
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&words[2])), len(words[2:])*4), b)
	return words
}

// SetHostname sets the kernel hostname.
func (LinuxSystem) SetHostname(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("hostname %q is longer than 64 bytes: %w", name, ErrInvalid)
	}
	return unix.Sethostname([]byte(name))
}

// SetMachineID writes id to /etc/machine-id unless it holds it already.
func (LinuxSystem) SetMachineID(id string) error { return writeMachineID("/etc/machine-id", id) }

// writeMachineID writes id to the file at path as systemd writes it (32
// lowercase hex digits and a newline, read-only): over the id there, which
// has the same length, or else by a rename.
func writeMachineID(path, id string) error {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("machine id %q is not 32 lowercase hex digits: %w", id, ErrInvalid)
	}
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == id {
		return nil
	}
	if err == nil && len(b) == len(id)+1 && guest.Rewrite(path, []byte(id+"\n"), len(b), 0o444) == nil {
		return nil
	}
	tmp := path + ".vers-new"
	os.Remove(tmp)
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o444); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
