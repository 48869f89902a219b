package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/coder/websocket"

	"vers/internal/errdefs"
	"vers/internal/vm"
)

// Tunnels is what GET /v1/vms/{ref}/tunnel needs: a TCP connection made
// inside a VM.
type Tunnels interface {
	DialTCP(ctx context.Context, ref, addr string) (TunnelConn, error)
}

// TunnelConn is one connection made inside a VM (agent.Conn): Read returns
// io.EOF at the peer's half-close and, called again, io.EOF once the
// connection ended in order or an error if it was reset.
type TunnelConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// vmTunnels is the manager seen as Tunnels.
type vmTunnels struct{ *vm.Manager }

func (t vmTunnels) DialTCP(ctx context.Context, ref, addr string) (TunnelConn, error) {
	c, err := t.Manager.DialTCP(ctx, ref, addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// tunnelChunk is the most one WebSocket message carries.
const tunnelChunk = 32 << 10

// tunnel carries one TCP connection made inside a VM over a WebSocket:
// binary messages are its bytes; an empty binary message is a half-close
// of the direction it travels in. The guest connects first, so that a
// refusal is an HTTP error. Once both sides have half-closed and the
// guest's end is in order, the server closes the WebSocket normally; a
// connection reset in the VM closes it with status 1011 and the reason,
// and a client that goes away before both half-closes resets the
// connection in the VM.
func (s *Server) tunnel(w http.ResponseWriter, r *http.Request) {
	addr, err := tunnelAddr(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.tunnels == nil {
		s.writeError(w, r, fmt.Errorf("this daemon has no tunnels: %w", errdefs.ErrUnavailable))
		return
	}
	// After the hijack the request's context does not end when the client
	// goes: the bridge ends the connection when reading from it fails.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	tc, err := s.tunnels.DialTCP(ctx, r.PathValue("ref"), addr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer tc.Close()
	// No options: a browser's request from a page of another origin than
	// the host it asks is refused (cross-site WebSocket hijacking of a UI
	// session); the Go clients send no Origin.
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(tunnelChunk + 1<<10)
	if err := bridge(ctx, conn, tc); err != nil {
		if !errors.Is(err, errClientGone) {
			s.log.Info("tunnel connection reset", "vm", r.PathValue("ref"), "addr", addr, "err", err)
		}
		tc.Close()
		conn.Close(websocket.StatusInternalError, closeReason(err))
		return
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

// tunnelAddr is the guest's address of a tunnel request: host (default
// the guest's loopback) and port.
func tunnelAddr(r *http.Request) (string, error) {
	q := r.URL.Query()
	host := q.Get("host")
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := strconv.Atoi(q.Get("port"))
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("port %q: give the port in the VM, 1-65535: %w", q.Get("port"), errdefs.ErrInvalid)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// closeReason fits err in a close frame's reason (at most 123 bytes).
func closeReason(err error) string {
	msg := errdefs.Message(err)
	if len(msg) > 123 {
		msg = msg[:120] + "..."
	}
	return msg
}

// errClientGone: the client's WebSocket ended before the connection did.
var errClientGone = errors.New("the client went away")

// bridge copies between the WebSocket and the connection until the guest's
// side has ended, and returns nil for an orderly end. When it returns with
// an error, the caller closes both; reading from the client goes on until
// its WebSocket closes.
func bridge(ctx context.Context, conn *websocket.Conn, tc TunnelConn) error {
	errc := make(chan error, 2)
	go func() { errc <- fromClient(ctx, conn, tc) }()
	go func() { errc <- toClient(ctx, conn, tc) }()
	// toClient ends first in order (the client half-closed before, or its
	// end would not be in order); fromClient ends only with the WebSocket,
	// or on an error.
	err := <-errc
	if err != nil {
		tc.Close()
	}
	return err
}

// fromClient passes the client's messages to the connection until the
// client half-closes, then waits for its WebSocket to end. It returns
// only on a failure, or with the WebSocket.
func fromClient(ctx context.Context, conn *websocket.Conn, tc TunnelConn) error {
	open := true
	for {
		typ, msg, err := conn.Read(ctx)
		switch {
		case err != nil:
			return errClientGone
		case typ != websocket.MessageBinary || !open:
			return fmt.Errorf("tunnel: a %s message after the half-close, or not binary: %w", typ, errdefs.ErrInvalid)
		case len(msg) == 0:
			open = false
			if err := tc.CloseWrite(); err != nil {
				return err
			}
			continue
		}
		if _, err := tc.Write(msg); err != nil {
			return err
		}
	}
}

// toClient passes what the guest's peer sends to the client, then the
// half-close, then waits for the connection's end.
func toClient(ctx context.Context, conn *websocket.Conn, tc TunnelConn) error {
	buf := make([]byte, tunnelChunk)
	for {
		n, err := tc.Read(buf)
		if n > 0 {
			if werr := conn.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
				return errClientGone
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := conn.Write(ctx, websocket.MessageBinary, nil); err != nil {
		return errClientGone
	}
	// The end: io.EOF once the client half-closed too, an error if the
	// guest reset the connection meanwhile.
	_, err := tc.Read(buf)
	if err == io.EOF {
		return nil
	}
	return err
}
