package agent

import (
	"bytes"
	"io"
)

// The session mark. A host writes it first on every connection, before the
// session's first byte, and the guest starts a session only after a mark
// and ends it at the next one. That is what keeps sessions apart on a
// virtio-serial port, which outlives its hosts: bytes an earlier host sent
// that no session read (a host that gave up during a hello, a branch
// child's port holding the rest of a frame from its parent's host at the
// freeze) are skipped instead of being read as the new session's frames;
// and a guest that resumed inside its parent's session (a branch child)
// ends that session as soon as its own host speaks.
//
// A mark inside a session's data (a file being uploaded that happens to
// hold these 16 bytes) would end that session; the mark is made at run
// time, so that the agent's own binary does not contain it.
var sessionMark = func() []byte {
	a := []byte("\x76\x65\x72\x73\x2d\x73\x65\x73\x73\x69\x6f\x6e\x2d\x6d\x6b\x21")
	k := []byte("\x9b\x13\x5e\xc1\x27\xaa\x04\x7d\xe8\x3c\x61\xf2\x0d\x95\xb7\x48")
	m := make([]byte, len(a))
	for i := range a {
		m[i] = a[i] ^ k[i]
	}
	return m
}()

// markStream is the incoming bytes of a port, cut into host sessions at
// each mark. One reader at a time. Nothing is held back: a session gets
// every byte as soon as it arrives, so a frame that happens to end like the
// start of a mark is never delayed; a mark split over two reads is found
// with the tail of the first, and the few bytes of it the ending session
// got do not matter, since its host has gone.
type markStream struct {
	r io.Reader
	// data is what was read from the port and not yet given to a session.
	data []byte
	// tail is the end of what was given or skipped last.
	tail []byte
	// synced: the session has seen its mark; ended: it met the next one.
	synced, ended bool
	err           error // a read error not yet returned
	buf           []byte
}

func newMarkStream(r io.Reader) *markStream {
	return &markStream{r: r, buf: make([]byte, 64<<10)}
}

// next starts the next session: its bytes begin after a mark — the one the
// last session ended at, or else the next to arrive.
func (m *markStream) next() {
	if !m.ended {
		m.synced, m.tail = false, nil
	}
	m.ended = false
}

// Read reads the current session's bytes, and io.EOF at the next mark.
func (m *markStream) Read(p []byte) (int, error) {
	for {
		if m.ended {
			return 0, io.EOF
		}
		if len(m.data) > 0 {
			if n := m.consume(p); n > 0 {
				return n, nil
			}
			continue
		}
		if err := m.err; err != nil {
			m.err = nil
			if err == io.EOF {
				// The host went away: the next one brings its own mark.
				m.synced, m.tail = false, nil
			}
			return 0, err
		}
		n, err := m.r.Read(m.buf)
		m.data = append(m.data, m.buf[:n]...)
		m.err = err
	}
}

// consume gives p what of m.data is the session's, skips what comes before
// its mark, and ends the session at the next mark. It returns how much p
// got (0: look again).
func (m *markStream) consume(p []byte) int {
	window := append(append([]byte(nil), m.tail...), m.data...)
	i := bytes.Index(window, sessionMark)
	if i < 0 {
		if !m.synced {
			m.tail, m.data = lastBytes(window, len(sessionMark)-1), nil
			return 0
		}
		n := copy(p, m.data)
		m.tail = lastBytes(window[:len(m.tail)+n], len(sessionMark)-1)
		m.data = m.data[n:]
		return n
	}
	// Where the mark starts and ends in m.data (it may start in the tail).
	start, end := i-len(m.tail), i+len(sessionMark)-len(m.tail)
	switch {
	case !m.synced:
		m.synced = true
	case start > 0:
		n := copy(p, m.data[:start])
		m.tail = lastBytes(window[:len(m.tail)+n], len(sessionMark)-1)
		m.data = m.data[n:]
		return n
	default:
		m.ended = true
	}
	m.data, m.tail = m.data[end:], nil
	return 0
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return append([]byte(nil), b...)
}

// markedConn is a host connection served directly (a unix socket, stdio):
// its session begins after the host's mark.
type markedConn struct {
	*markStream
	io.WriteCloser
}

func newMarkedConn(conn io.ReadWriteCloser) *markedConn {
	ms := newMarkStream(conn)
	ms.next()
	return &markedConn{markStream: ms, WriteCloser: conn}
}
