package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/coder/websocket"
)

// ErrTunnelReset: a tunnelled connection ended before both sides were
// done (reset in the VM, the VM gone, versd gone).
var ErrTunnelReset = errors.New("connection reset")

// tunnelChunk is the most one WebSocket message carries (the daemon reads
// no more at once).
const tunnelChunk = 32 << 10

// TunnelConn is one TCP connection made inside a VM. Read returns io.EOF
// when the peer in the VM half-closed; called again, it waits for the end
// of the connection: io.EOF for an orderly one (after CloseWrite), or an
// error wrapping ErrTunnelReset with the reason. Read and Write may run on
// two goroutines. Close before the orderly end resets it.
type TunnelConn interface {
	io.ReadWriteCloser
	// CloseWrite half-closes: the peer in the VM reads the end of the data.
	CloseWrite() error
}

// wsTunnel is a TunnelConn carried by a WebSocket of GET
// /v1/vms/{ref}/tunnel.
type wsTunnel struct {
	ws  *websocket.Conn
	ctx context.Context

	rest   []byte // what a Read left of the last message
	inDone bool   // the guest's side half-closed

	wmu     sync.Mutex
	outDone bool
}

// Tunnel has VM ref connect to host:port (as the guest reaches it; ""
// is its own loopback) and returns the connection, which lives until
// Close or the end of ctx. A refusal in the VM is an *Error, as any
// answer of versd.
func (c *Client) Tunnel(ctx context.Context, ref, host string, port int) (TunnelConn, error) {
	path, err := vmPath(ref, "/tunnel")
	if err != nil {
		return nil, err
	}
	q := url.Values{"port": {strconv.Itoa(port)}}
	if host != "" {
		q.Set("host", host)
	}
	ws, resp, err := websocket.Dial(ctx, c.base+path+"?"+q.Encode(), &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, decodeError(resp)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.transportErr(err)
	}
	ws.SetReadLimit(1 << 20)
	return &wsTunnel{ws: ws, ctx: ctx}, nil
}

func (t *wsTunnel) Read(p []byte) (int, error) {
	if len(t.rest) > 0 {
		n := copy(p, t.rest)
		t.rest = t.rest[n:]
		return n, nil
	}
	typ, msg, err := t.ws.Read(t.ctx)
	switch {
	case err != nil && t.ctx.Err() != nil:
		return 0, t.ctx.Err()
	case err != nil && t.inDone && websocket.CloseStatus(err) == websocket.StatusNormalClosure:
		return 0, io.EOF
	case err != nil:
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Reason != "" {
			return 0, fmt.Errorf("%s: %w", ce.Reason, ErrTunnelReset)
		}
		return 0, fmt.Errorf("the connection to versd ended (%v): %w", err, ErrTunnelReset)
	case typ != websocket.MessageBinary || t.inDone:
		return 0, fmt.Errorf("versd sent a %s message after the end of the data, or not binary: %w", typ, ErrTunnelReset)
	case len(msg) == 0:
		t.inDone = true
		return 0, io.EOF
	}
	n := copy(p, msg)
	t.rest = msg[n:]
	return n, nil
}

func (t *wsTunnel) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.outDone {
		return 0, errors.New("write after CloseWrite")
	}
	total := 0
	for len(p) > 0 {
		n := min(len(p), tunnelChunk)
		if err := t.ws.Write(t.ctx, websocket.MessageBinary, p[:n]); err != nil {
			return total, fmt.Errorf("%v: %w", err, ErrTunnelReset)
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

func (t *wsTunnel) CloseWrite() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.outDone {
		return nil
	}
	t.outDone = true
	return t.ws.Write(t.ctx, websocket.MessageBinary, nil)
}

func (t *wsTunnel) Close() error {
	t.ws.Close(websocket.StatusNormalClosure, "")
	return nil
}
