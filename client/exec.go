package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/coder/websocket"

	"vers/api"
)

// WinSize is a terminal size.
type WinSize struct{ Rows, Cols uint16 }

// ExecIO connects a remote process to local streams. Stdin may be nil.
// Resize and Signal, if set, are forwarded while the process runs.
type ExecIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Resize <-chan WinSize
	Signal <-chan int
}

// Exec runs req in VM ref and returns its exit. It returns when the process
// has exited and all of its output has been written.
func (c *Client) Exec(ctx context.Context, ref string, req api.ExecRequest, streams ExecIO) (api.ExecControl, error) {
	if ref == "" {
		return api.ExecControl{}, ErrNoRef
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req.Stdin = streams.Stdin != nil
	conn, resp, err := websocket.Dial(ctx, c.base+"/v1/vms/"+url.PathEscape(ref)+"/exec", &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return api.ExecControl{}, decodeError(resp)
		}
		return api.ExecControl{}, c.transportErr(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(4 << 20)
	b, _ := json.Marshal(req)
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return api.ExecControl{}, err
	}
	if streams.Stdout == nil {
		streams.Stdout = io.Discard
	}
	if streams.Stderr == nil {
		streams.Stderr = io.Discard
	}

	started := make(chan struct{})
	go func() {
		select {
		case <-started:
		case <-ctx.Done():
			return
		}
		c.forward(ctx, conn, streams)
	}()

	startedOnce := false
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return api.ExecControl{}, ctx.Err()
			}
			return api.ExecControl{}, fmt.Errorf("connection to versd lost during exec: %w", err)
		}
		if typ == websocket.MessageBinary {
			if len(msg) < 2 {
				continue
			}
			w := streams.Stdout
			if msg[0] == api.StreamStderr {
				w = streams.Stderr
			}
			if _, err := w.Write(msg[1:]); err != nil {
				return api.ExecControl{}, err
			}
			continue
		}
		var ctl api.ExecControl
		if err := json.Unmarshal(msg, &ctl); err != nil {
			return api.ExecControl{}, fmt.Errorf("bad control message from versd: %w", err)
		}
		switch ctl.Type {
		case "started":
			if !startedOnce {
				startedOnce = true
				close(started)
			}
		case "exit":
			conn.Close(websocket.StatusNormalClosure, "")
			return ctl, nil
		case "error":
			if ctl.Error == nil {
				return ctl, errors.New("exec failed")
			}
			return ctl, &Error{Code: ctl.Error.Code, Message: ctl.Error.Message}
		}
	}
}

// forward sends stdin, resizes and signals until ctx ends.
func (c *Client) forward(ctx context.Context, conn *websocket.Conn, s ExecIO) {
	if s.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 {
					frame := append([]byte{api.StreamStdin}, buf[:n]...)
					if conn.Write(ctx, websocket.MessageBinary, frame) != nil {
						return
					}
				}
				if err != nil {
					conn.Write(ctx, websocket.MessageBinary, []byte{api.StreamStdin})
					return
				}
			}
		}()
	}
	for {
		var ctl api.ExecControl
		select {
		case <-ctx.Done():
			return
		case ws, ok := <-s.Resize:
			if !ok {
				s.Resize = nil
				continue
			}
			ctl = api.ExecControl{Type: "resize", Rows: ws.Rows, Cols: ws.Cols}
		case sig, ok := <-s.Signal:
			if !ok {
				s.Signal = nil
				continue
			}
			ctl = api.ExecControl{Type: "signal", Signal: sig}
		}
		b, _ := json.Marshal(ctl)
		if conn.Write(ctx, websocket.MessageText, b) != nil {
			return
		}
	}
}
