package agent

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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
