package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/yamux"
)

// Client is the host end of one session with a guest agent. It is safe for
// concurrent use; each call runs on its own stream.
type Client struct {
	conn    net.Conn
	sess    *yamux.Session
	version string
}

// dialRetry is the pause between two connection attempts in Dial.
const dialRetry = 50 * time.Millisecond

// helloTimeout bounds the first hello attempt: a guest that is still
// booting, or a stale session left over on the guest side, gets a fresh
// connection after it. Each later attempt waits twice as long as the one
// before (up to maxHelloTimeout): a guest that is only slow — one of fifty
// children starting at once on two cores — must not be made to begin its
// session again and again, never finishing one.
const (
	helloTimeout    = 2 * time.Second
	maxHelloTimeout = 16 * time.Second
)

// Dial connects to the guest agent through the unix socket at socketPath (QEMU's
// chardev) and waits until the agent answers a hello. It retries (socket
// missing, refused, no answer) until ctx ends.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var last error
	wait := helloTimeout
	for {
		c, err := dialOnce(ctx, socketPath, wait)
		if err == nil {
			return c, nil
		}
		last = err
		if errors.Is(err, errNoHello) {
			wait = min(2*wait, maxHelloTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial agent at %s: %w (last error: %v)", socketPath, ctx.Err(), last)
		case <-time.After(dialRetry):
		}
	}
}

// errNoHello: the socket connected but the agent did not answer in time.
var errNoHello = errors.New("no hello from the agent")

func dialOnce(ctx context.Context, socketPath string, wait time.Duration) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, err
	}
	c, err := newClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var rep reply
	if err := c.call(hctx, request{Op: opHello}, &rep); err != nil {
		c.Close()
		if hctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("hello: %w after %s", errNoHello, wait)
		}
		return nil, fmt.Errorf("hello: %w", err)
	}
	c.version = rep.Version
	return c, nil
}

// NewClient starts a host session over an already connected byte stream
// (tests, or a transport other than a unix socket). It does not wait for a
// hello.
func NewClient(conn net.Conn) (*Client, error) {
	return newClient(conn)
}

func newClient(conn net.Conn) (*Client, error) {
	// The mark first: where this session begins (see sessionMark).
	conn.SetWriteDeadline(time.Now().Add(helloTimeout))
	_, err := conn.Write(sessionMark)
	conn.SetWriteDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("session mark: %w", err)
	}
	sess, err := yamux.Client(conn, muxConfig())
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, sess: sess}, nil
}

// muxConfig is shared by both ends. Keepalives are off: the guest learns of a
// lost host from the port's EOF, the host of a dead VM from the socket, and a
// VM paused for a snapshot must not look dead.
func muxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.ConnectionWriteTimeout = time.Minute
	cfg.MaxStreamWindowSize = 1 << 20
	cfg.LogOutput = io.Discard
	return cfg
}

// Version is the agent version the guest reported in its hello.
func (c *Client) Version() string { return c.version }

// Done is closed when the session with the guest has ended.
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// Close ends the session. Processes still running for it are killed in the guest.
func (c *Client) Close() error {
	err := c.sess.Close()
	c.conn.Close()
	return err
}

// open starts a stream and sends its request header.
func (c *Client) open(ctx context.Context, req request) (*yamux.Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, c.wrap(err)
	}
	if err := writeMsg(st, req); err != nil {
		st.Close()
		return nil, c.wrap(err)
	}
	return st, nil
}

// wrap marks errors caused by the end of the session.
func (c *Client) wrap(err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	if c.sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%v: %w", err, ErrClosed)
	}
	return err
}

// readReply waits for the reply on st, giving up when ctx ends.
func (c *Client) readReply(ctx context.Context, st *yamux.Stream, rep *reply) error {
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	err := readMsg(st, rep)
	if !stop() {
		if err != nil {
			return ctx.Err()
		}
	}
	st.SetReadDeadline(time.Time{})
	return c.wrap(err)
}

// call runs a request whose whole answer is one reply.
func (c *Client) call(ctx context.Context, req request, rep *reply) error {
	st, err := c.open(ctx, req)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := c.readReply(ctx, st, rep); err != nil {
		return err
	}
	return rep.err(req.Op)
}

// Info answers once the guest is fully up (root mounted, network configured).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var rep reply
	if err := c.call(ctx, request{Op: opInfo}, &rep); err != nil {
		return Info{}, err
	}
	if rep.Info == nil {
		return Info{}, fmt.Errorf("info: empty reply: %w", ErrProtocol)
	}
	return *rep.Info, nil
}

// Sync sets the guest clock, adds host entropy to the guest kernel's RNG
// (credited) and sets the hostname if s.Hostname is not empty.
func (c *Client) Sync(ctx context.Context, s SyncRequest) error {
	_, err := c.SyncClock(ctx, s)
	return err
}

// SyncClock is Sync that also returns the guest's clock as it answered
// (zero from an agent that does not say).
func (c *Client) SyncClock(ctx context.Context, s SyncRequest) (time.Time, error) {
	var rep reply
	if err := c.call(ctx, request{Op: opSync, Sync: &s}, &rep); err != nil {
		return time.Time{}, err
	}
	if rep.Clock == nil {
		return time.Time{}, nil
	}
	return *rep.Clock, nil
}

// ReadFile opens a file in the guest and streams it to its end. The caller
// must close the reader; the reader fails with io.ErrUnexpectedEOF if the
// transfer is cut short. The transfer is bound to ctx: when it ends, reads
// fail and the guest stops sending. FileInfo.Size is only what the guest's
// stat said when it opened the file.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	f, rep, err := c.download(ctx, request{Op: opRead, Path: path})
	if err != nil {
		return nil, FileInfo{}, err
	}
	if rep.File == nil {
		f.Close()
		return nil, FileInfo{}, fmt.Errorf("read %s: no file info: %w", path, ErrProtocol)
	}
	return f, *rep.File, nil
}

// download opens a stream whose reply is followed by chunks, and returns
// the reader of the chunks, bound to ctx.
func (c *Client) download(ctx context.Context, req request) (*fileReader, reply, error) {
	st, err := c.open(ctx, req)
	if err != nil {
		return nil, reply{}, err
	}
	var rep reply
	if err := c.readReply(ctx, st, &rep); err != nil {
		st.Close()
		return nil, rep, err
	}
	if err := rep.err(""); err != nil {
		st.Close()
		return nil, rep, err
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	return &fileReader{chunkReader: chunkReader{r: st}, st: st, c: c, ctx: ctx, stop: stop}, rep, nil
}

type fileReader struct {
	chunkReader
	st   *yamux.Stream
	c    *Client
	ctx  context.Context
	stop func() bool
}

func (f *fileReader) Read(p []byte) (int, error) {
	n, err := f.chunkReader.Read(p)
	if err != nil && err != io.EOF {
		if f.ctx.Err() != nil {
			return n, f.ctx.Err()
		}
		err = f.c.wrap(err)
	}
	return n, err
}

// Close ends the stream; before the end of the file, the guest stops sending.
func (f *fileReader) Close() error {
	f.stop()
	return f.st.Close()
}

// WriteFile writes r to path in the guest atomically (a temporary file renamed
// over path), creating parent directories. A failing r, or a ctx that ends,
// leaves path untouched; once ctx has ended, WriteFile returns at once, and a
// Read of r in progress is left to finish on its own. When the guest fails (its filesystem is full, path
// is a directory) it answers at once, and WriteFile stops sending and returns
// that error.
func (c *Client) WriteFile(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	_, err := c.upload(ctx, request{Op: opWrite, Path: path, Mode: mode}, r)
	return err
}

// upload sends r as chunks after req and returns the guest's reply, which
// may come before r's end (then the rest of r is not read).
func (c *Client) upload(ctx context.Context, req request, r io.Reader) (reply, error) {
	path := req.Path
	st, err := c.open(ctx, req)
	if err != nil {
		return reply{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() {
		st.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	type answer struct {
		rep reply
		err error
	}
	replied := make(chan answer, 1)
	go func() {
		var a answer
		a.err = readMsg(st, &a.rep)
		// Nothing more is sent once the guest has answered: an early answer
		// is an error, and a writer blocked on a full window must wake.
		st.SetWriteDeadline(time.Unix(1, 0))
		replied <- a
	}()
	sent := make(chan error, 1)
	go func() {
		_, err := sendChunks(st, r)
		sent <- err
	}()
	select {
	case err = <-sent:
	case <-ctx.Done():
		// r may block (a client that stalls): do not wait for it. Closing
		// the stream ends the transfer in the guest now.
		st.Close()
		return reply{}, ctx.Err()
	}
	if err != nil {
		// The guest may have answered why it stopped reading; its reason
		// beats our write error. Without a reply, stop waiting for one: the
		// stream closes, and the guest sees a truncated transfer and drops
		// its temporary file.
		var a answer
		select {
		case a = <-replied:
		default:
			st.SetReadDeadline(time.Unix(1, 0))
			a = <-replied
		}
		switch {
		case ctx.Err() != nil:
			return reply{}, ctx.Err()
		case a.err == nil && a.rep.Error != "":
			return a.rep, a.rep.err("")
		}
		return reply{}, fmt.Errorf("%s %s: %w", req.Op, path, c.wrap(err))
	}
	a := <-replied
	switch {
	case a.err != nil && ctx.Err() != nil:
		return reply{}, ctx.Err()
	case a.err != nil:
		return reply{}, fmt.Errorf("%s %s: %w", req.Op, path, c.wrap(a.err))
	}
	return a.rep, a.rep.err("")
}

// newID names an exec so its stdio streams can find it in the guest.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
