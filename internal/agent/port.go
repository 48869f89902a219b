package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PortName is the name of the virtio-serial port that carries the channel.
const PortName = "vers.agent"

// Port is the guest end of the host channel. Like a virtio-serial port it
// stays open across host sessions: while no host is connected, Read returns
// io.EOF and Write blocks.
type Port interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
	// HostConnected reports whether a host holds the other end now.
	HostConnected() (bool, error)
}

// reconnectPoll is how often a port without a host is checked.
const reconnectPoll = 10 * time.Millisecond

// ServePort serves host sessions on port one after another, forever (until
// ctx ends): when a host goes away its session is torn down, its processes
// are killed, and the next host to connect gets a fresh session.
func (s *Server) ServePort(ctx context.Context, port Port) error {
	stream := newMarkStream(port)
	for {
		if err := waitHost(ctx, port); err != nil {
			return err
		}
		s.cfg.Logf("host connected")
		stream.next()
		ps := &portSession{port: port, in: stream}
		s.serveSession(ctx, ps)
		ps.Close()
		s.cfg.Logf("host session ended")
		if err := ctx.Err(); err != nil {
			return err
		}
		// A session can also end on a protocol error with the host still
		// there; never spin on it.
		time.Sleep(reconnectPoll)
	}
}

func waitHost(ctx context.Context, port Port) error {
	for {
		ok, err := port.HostConnected()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(reconnectPoll):
		}
	}
}

// portSession is one session's view of a Port. Closing it interrupts and
// waits out its pending reads and writes, so that no byte of an old session
// can reach the next host and no byte of the next host is read by an old session.
type portSession struct {
	port     Port
	in       *markStream // the port's incoming bytes, cut at session marks
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
}

func (p *portSession) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.inflight.Add(1)
	return true
}

func (p *portSession) Read(b []byte) (int, error) {
	if !p.enter() {
		return 0, io.EOF
	}
	defer p.inflight.Done()
	return p.in.Read(b)
}

func (p *portSession) Write(b []byte) (int, error) {
	if !p.enter() {
		return 0, io.ErrClosedPipe
	}
	defer p.inflight.Done()
	return p.port.Write(b)
}

// Close returns only when no read or write of this session is pending any
// more, for every caller (yamux and ServePort may both close).
func (p *portSession) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.port.SetDeadline(time.Unix(1, 0))
		p.inflight.Wait()
		p.port.SetDeadline(time.Time{})
	})
	return nil
}

// VirtioPort is a virtio-serial port device (/dev/vportNpM).
type VirtioPort struct {
	f *os.File
}

// ErrNoPort: the guest has no virtio-serial port of that name (yet).
var ErrNoPort = errors.New("virtio-serial port not found")

// FindPort returns the device of the virtio-serial port called name, looking
// in sysfs (/sys/class/virtio-ports/*/name).
func FindPort(sysfs, name string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(sysfs, "class/virtio-ports/*/name"))
	if err != nil {
		return "", err
	}
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(p)), nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNoPort)
}

// OpenVirtioPort opens the port device. The descriptor is non-blocking so
// that reads and writes can be interrupted by deadlines.
func OpenVirtioPort(dev string) (*VirtioPort, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dev, Err: err}
	}
	return &VirtioPort{f: os.NewFile(uintptr(fd), dev)}, nil
}

func (v *VirtioPort) Read(b []byte) (int, error)    { return v.f.Read(b) }
func (v *VirtioPort) Write(b []byte) (int, error)   { return v.f.Write(b) }
func (v *VirtioPort) SetDeadline(t time.Time) error { return v.f.SetDeadline(t) }
func (v *VirtioPort) Close() error                  { return v.f.Close() }

// HostConnected polls the port: virtio_console reports POLLHUP while the host
// end is not connected.
func (v *VirtioPort) HostConnected() (bool, error) {
	var hup bool
	err := fdControl(v.f, func(fd int) error {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
		for {
			_, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			hup = fds[0].Revents&unix.POLLHUP != 0
			return nil
		}
	})
	return !hup, err
}

var _ Port = (*VirtioPort)(nil)
