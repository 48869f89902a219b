package agent

// The dial op: a TCP connection made by the guest for the host, one stream
// per connection (vers tunnel). Only the host asks; the guest never makes
// the host connect anywhere.
//
// After the reply, each side sends the bytes it reads as chunks (proto.go).
// The end marker is a half-close: the sender has nothing more to send, and
// the receiver shuts down the writing side of its socket. A side ends the
// stream (yamux Close) only when it is done with the connection: once it
// has sent its end marker and received the other's, or at once to give up.
// So a stream that ends before the end marker arrived, or before this side
// sent its own, is a reset: that side's peer is gone or failed, and nobody
// reads what this side would still send. Both sides keep reading after the
// other's end marker for that reason: to learn of the end of the stream.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"vers/internal/errdefs"
)

var (
	// ErrUnreachable: the guest could not connect (refused: nothing
	// listens there; no route; an unknown host name).
	ErrUnreachable error = &kind{"unavailable", errdefs.ErrUnavailable}
	// ErrDialTimeout: the guest's connect got no answer within dialTimeout.
	ErrDialTimeout error = &kind{"timed out", errdefs.ErrTimeout}
	// ErrReset: the connection ended before both sides were done: the
	// other end went away or failed.
	ErrReset = errors.New("connection reset")
)

// Error codes of a failed dial.
const (
	codeUnreachable = "unreachable"
	codeDialTimeout = "dial_timeout"
)

// dialTimeout bounds the guest's connect.
const dialTimeout = 10 * time.Second

// Conn is the host's end of a TCP connection the guest made for DialTCP.
// Read and Write may be used from two goroutines; Read from one at a time.
type Conn struct {
	st   *yamux.Stream
	c    *Client
	addr string

	in     chunkReader
	inDone bool // the guest's end marker was read

	wmu     sync.Mutex
	wbuf    []byte
	outDone atomic.Bool // our end marker was sent
}

// DialTCP has the guest connect to addr (HOST:PORT, as the guest reaches
// it: 127.0.0.1 is the guest's own loopback). The connection stays until
// Close, whatever becomes of ctx, which bounds only the dial; so does
// dialTimeout, and a little more for the answer to come.
func (c *Client) DialTCP(ctx context.Context, addr string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout+5*time.Second)
	defer cancel()
	st, err := c.open(ctx, request{Op: opDial, Addr: addr})
	if err != nil {
		return nil, err
	}
	var rep reply
	if err := c.readReply(ctx, st, &rep); err != nil {
		st.Close()
		return nil, err
	}
	if err := dialErr(rep); err != nil {
		st.Close()
		return nil, err
	}
	return &Conn{st: st, c: c, addr: addr, in: chunkReader{r: st}}, nil
}

// dialErr is the error of a failed dial reply.
func dialErr(r reply) error {
	switch r.Code {
	case codeUnreachable:
		return fmt.Errorf("%s: %w", r.Error, ErrUnreachable)
	case codeDialTimeout:
		return fmt.Errorf("%s: %w", r.Error, ErrDialTimeout)
	}
	return r.err("")
}

// Read reads what the guest's peer sent. It returns io.EOF when the peer
// has shut down its writing side. Called again after that, it waits for
// the end of the connection and returns io.EOF for an orderly one (after
// CloseWrite), or ErrReset if the guest gave up while this side had more
// to send: a caller copying both ways keeps reading to learn of that.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.inDone {
		n, err := c.in.Read(p)
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			c.inDone = true
			return n, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return n, c.reset()
		}
		return n, c.c.wrap(err)
	}
	var b [1]byte
	_, err := c.st.Read(b[:])
	switch {
	case err == io.EOF && c.outDone.Load():
		return 0, io.EOF
	case err == io.EOF:
		return 0, c.reset()
	case err == nil:
		return 0, fmt.Errorf("dial %s: data after the end marker: %w", c.addr, ErrProtocol)
	}
	return 0, c.c.wrap(err)
}

// reset stops writes: nobody reads them any more. The stream ends early
// when the whole session does, too: that is ErrClosed.
func (c *Conn) reset() error {
	c.st.SetWriteDeadline(time.Unix(1, 0))
	if c.c.sess.IsClosed() {
		return fmt.Errorf("%s in the VM: %w", c.addr, ErrClosed)
	}
	return fmt.Errorf("%s in the VM: %w", c.addr, ErrReset)
}

// Write sends p to the guest's peer.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.outDone.Load() {
		return 0, fmt.Errorf("write to %s after CloseWrite: %w", c.addr, net.ErrClosed)
	}
	if c.wbuf == nil {
		c.wbuf = make([]byte, 4+maxChunk)
	}
	total := 0
	for len(p) > 0 {
		n := copy(c.wbuf[4:], p)
		putLen(c.wbuf, n)
		if _, err := c.st.Write(c.wbuf[:4+n]); err != nil {
			return total, c.c.wrap(err)
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

// CloseWrite shuts down the writing side: the guest's peer reads its end.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.outDone.Swap(true) {
		return nil
	}
	var end [4]byte
	_, err := c.st.Write(end[:])
	return c.c.wrap(err)
}

// Close ends the connection: in order after CloseWrite and a Read of
// io.EOF, as a reset otherwise. A Read or Write under way returns.
func (c *Conn) Close() error {
	err := c.st.Close()
	c.st.SetDeadline(time.Unix(1, 0))
	return err
}

func putLen(b []byte, n int) {
	b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// dial answers a dial request: connect, reply, then splice the connection
// and the stream until both are done.
func (s *Server) dial(st *yamux.Stream, addr string) {
	conn, err := dialTCP(addr)
	if err != nil {
		s.cfg.Logf("dial %s: %v", addr, err)
		writeMsg(st, dialReply(addr, err))
		return
	}
	defer conn.Close()
	if err := writeMsg(st, reply{}); err != nil {
		return
	}
	splice(st, conn)
}

// dialTCP connects to addr, a HOST:PORT with a port 1-65535.
func dialTCP(addr string) (*net.TCPConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%q is no address: write HOST:PORT: %w", addr, ErrInvalid)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("%q: the port must be 1-65535: %w", addr, ErrInvalid)
	}
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// dialReply says why a dial failed, with the code the host maps back.
func dialReply(addr string, err error) reply {
	var ne net.Error
	switch {
	case errors.Is(err, ErrInvalid):
		return replyFor(err, reply{})
	case errors.Is(err, syscall.ECONNREFUSED):
		return reply{Code: codeUnreachable, Error: fmt.Sprintf("connection to %s refused in the VM: nothing listens there", addr)}
	case errors.As(err, &ne) && ne.Timeout():
		return reply{Code: codeDialTimeout, Error: fmt.Sprintf("no answer from %s in the VM within %s", addr, dialTimeout)}
	}
	return reply{Code: codeUnreachable, Error: fmt.Sprintf("the VM cannot reach %s: %v", addr, err)}
}

// splice copies between the stream and conn both ways. Either side's end
// marker shuts down the other's writing side; any failure resets both.
func splice(st *yamux.Stream, conn *net.TCPConn) {
	var once sync.Once
	reset := func() {
		once.Do(func() {
			conn.SetLinger(0)
			conn.Close()
			st.Close()
			st.SetDeadline(time.Unix(1, 0))
		})
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// Without the end marker when conn failed: the stream's end then
		// tells the host.
		if _, err := sendChunks(st, conn); err != nil {
			reset()
		}
	}()
	if _, err := io.Copy(conn, &chunkReader{r: st}); err != nil {
		reset()
		<-sent
		return
	}
	conn.CloseWrite()
	// The host has sent everything. Once our end marker went too, we are
	// done. The end of its stream before that says it reads no more: the
	// sender stops, and that is a reset.
	ended := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := st.Read(b[:])
		ended <- err
	}()
	select {
	case <-sent:
	case err := <-ended:
		if err != io.EOF {
			reset()
		}
		conn.SetReadDeadline(time.Unix(1, 0))
		st.SetWriteDeadline(time.Unix(1, 0))
		<-sent
	}
	st.SetReadDeadline(time.Unix(1, 0))
}
