package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrDisconnected: the QMP connection is closed (QEMU exited or Close was called).
var ErrDisconnected = errors.New("qmp connection closed")

// QMPError is an error QEMU returned for a command.
type QMPError struct {
	Class string `json:"class"` // e.g. GenericError, CommandNotFound, DeviceNotFound
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// defaultHandshake bounds the QMP greeting when ctx has no deadline: QEMU
// serves one monitor client at a time, so a second client would wait forever.
const defaultHandshake = 10 * time.Second

// monitor is a QMP client on a unix socket. Commands carry ids, so a reply
// that arrives after its caller gave up is recognised and dropped. Events are
// read and discarded: callers poll state (query-status, query-migrate).
//
// It is written here rather than taken from go-qemu's SocketMonitor because
// the daemon needs what that one lacks: a context on every call (a hung QEMU
// must not hang a request), QEMU's error class, and descriptor passing
// without QEMU having to advertise the "oob" capability.
type monitor struct {
	conn *net.UnixConn

	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan qmpReply

	done    chan struct{} // closed when the reader stops
	readErr error         // why; set before done is closed

	// shutdown is the reason of the last SHUTDOWN event: why the guest is
	// ending (with -no-reboot, a guest reset ends QEMU too).
	shutdown atomic.Value // string
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
}

type qmpMessage struct {
	qmpReply
	Event string  `json:"event"`
	ID    *uint64 `json:"id"`
	Data  struct {
		Reason string `json:"reason"` // SHUTDOWN: guest-shutdown, guest-reset, guest-panic, host-qmp-quit, ...
	} `json:"data"`
}

// dialMonitor connects to a QMP socket and completes the capabilities
// handshake, within ctx (or defaultHandshake if ctx has no deadline).
func dialMonitor(ctx context.Context, path string) (*monitor, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHandshake)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	conn := c.(*net.UnixConn)
	// Close the connection if ctx ends during the handshake, which has no
	// other way to be interrupted.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	r := bufio.NewReader(conn)
	err = handshake(conn, r)
	if !stop() || err != nil {
		conn.Close()
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("qmp handshake %s: %w", path, ctx.Err())
		}
		return nil, err
	}
	m := &monitor{conn: conn, pending: map[uint64]chan qmpReply{}, done: make(chan struct{})}
	go m.read(r)
	return m, nil
}

func handshake(conn *net.UnixConn, r *bufio.Reader) error {
	// QEMU 7.2 can send an event before the greeting (NETDEV_STREAM_CONNECTED,
	// when the network helper connects at that moment): events are skipped.
	for {
		var greeting struct {
			QMP   *json.RawMessage `json:"QMP"`
			Event string           `json:"event"`
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp greeting: %w", err)
		}
		if err := json.Unmarshal(line, &greeting); err == nil && greeting.Event != "" {
			continue
		}
		if err != nil || greeting.QMP == nil {
			return fmt.Errorf("qmp greeting: not a QMP server: %q", line)
		}
		break
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return fmt.Errorf("qmp capabilities: %w", err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp capabilities: %w", err)
		}
		var msg qmpMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			return fmt.Errorf("qmp capabilities: bad reply %q: %w", line, err)
		}
		switch {
		case msg.Event != "":
			continue
		case msg.Error != nil:
			return fmt.Errorf("qmp capabilities: %w", msg.Error)
		default:
			return nil
		}
	}
}

func (m *monitor) read(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var msg qmpMessage
		if json.Unmarshal(line, &msg) != nil {
			continue
		}
		if msg.Event == "SHUTDOWN" {
			m.shutdown.Store(msg.Data.Reason)
		}
		if msg.Event != "" || msg.ID == nil {
			continue
		}
		m.mu.Lock()
		ch := m.pending[*msg.ID]
		delete(m.pending, *msg.ID)
		m.mu.Unlock()
		if ch != nil {
			ch <- msg.qmpReply // buffered: never blocks
		}
	}
	m.readErr = fmt.Errorf("%w: %v", ErrDisconnected, err)
	close(m.done)
}

// CallTimeout bounds every QMP command, whatever the caller's context
// allows: no command QEMU answers takes long (a migration returns at once and
// is polled), so a QEMU that does not answer within it is stuck (stopped,
// hung, or swapped out), and the caller must learn so instead of waiting.
const CallTimeout = 15 * time.Second

// ErrUnresponsive: QEMU did not answer a QMP command within CallTimeout.
var ErrUnresponsive = errors.New("qemu is not answering")

// execute runs one QMP command. If f is not nil its descriptor travels with
// the command (SCM_RIGHTS), as getfd and add-fd expect.
func (m *monitor) execute(ctx context.Context, cmd string, args any, f *os.File, result any) error {
	ctx, cancel := context.WithTimeoutCause(ctx, CallTimeout, fmt.Errorf("no answer within %s: %w", CallTimeout, ErrUnresponsive))
	defer cancel()
	m.mu.Lock()
	m.nextID++
	id := m.nextID
	ch := make(chan qmpReply, 1)
	m.pending[id] = ch
	m.mu.Unlock()
	forget := func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{cmd, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	if err := m.write(ctx, append(b, '\n'), f); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}

	select {
	case r := <-ch:
		if r.Error != nil {
			return r.Error
		}
		if result != nil {
			if err := json.Unmarshal(r.Return, result); err != nil {
				return fmt.Errorf("qmp %s: decode reply %s: %w", cmd, r.Return, err)
			}
		}
		return nil
	case <-m.done:
		forget()
		// The reply may have been delivered just before the reader stopped.
		select {
		case r := <-ch:
			if r.Error != nil {
				return r.Error
			}
			if result != nil {
				return json.Unmarshal(r.Return, result)
			}
			return nil
		default:
		}
		return fmt.Errorf("qmp %s: %w", cmd, m.readErr)
	case <-ctx.Done():
		forget()
		if cause := context.Cause(ctx); errors.Is(cause, ErrUnresponsive) {
			return fmt.Errorf("qmp %s: %w", cmd, cause)
		}
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func (m *monitor) write(ctx context.Context, b []byte, f *os.File) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	select {
	case <-m.done:
		return m.readErr
	default:
	}
	dl, _ := ctx.Deadline()
	m.conn.SetWriteDeadline(dl)
	if f == nil {
		_, err := m.conn.Write(b)
		return err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = raw.Control(func(fd uintptr) {
		var n int
		n, _, werr = m.conn.WriteMsgUnix(b, unix.UnixRights(int(fd)), nil)
		if werr == nil && n != len(b) {
			werr = fmt.Errorf("short write with file: %d of %d bytes", n, len(b))
		}
	})
	runtime.KeepAlive(f)
	if err != nil {
		return err
	}
	return werr
}

func (m *monitor) close() error {
	err := m.conn.Close()
	<-m.done
	return err
}
