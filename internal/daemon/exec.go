package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
)

// exec runs a process in a VM over a WebSocket: the client sends an
// api.ExecRequest, then stdin frames and resize/signal controls; the server
// streams stdout and stderr frames and ends with an "exit" control.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	// No options: a browser's request from a page of another origin than
	// the host it asks is refused (cross-site WebSocket hijacking of a UI
	// session); the Go clients send no Origin.
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(4 << 20)
	// After the hijack the request's context does not end when the client
	// goes: the exec's own context ends when reading from the client fails,
	// and with it the process in the guest.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if err := s.runExec(ctx, cancel, conn, ref); err != nil {
		e := &api.Error{Code: errdefs.Code(err), Message: errdefs.Message(err)}
		if e.Code == api.CodeInternal {
			s.log.Error("exec failed", "vm", ref, "err", err)
		}
		sendControl(ctx, conn, api.ExecControl{Type: "error", Error: e})
		conn.Close(websocket.StatusNormalClosure, "")
		return
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

func sendControl(ctx context.Context, conn *websocket.Conn, c api.ExecControl) error {
	b, _ := json.Marshal(c)
	return conn.Write(ctx, websocket.MessageText, b)
}

func (s *Server) runExec(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn, ref string) error {
	req, err := readExecRequest(ctx, conn)
	if err != nil {
		return err
	}
	proc, err := s.vms.Exec(ctx, ref, agent.ExecRequest{
		Argv: req.Argv, Shell: req.Command, Env: req.Env, Dir: req.Dir,
		Timeout: time.Duration(req.TimeoutMS) * time.Millisecond,
		TTY:     req.TTY, Rows: req.Rows, Cols: req.Cols, Term: req.Term,
		Login: req.TTY && req.Command == "" && len(req.Argv) == 0,
	})
	if err != nil {
		return err
	}
	defer proc.Close()
	if !req.Stdin {
		proc.Stdin().Close()
	}
	if err := sendControl(ctx, conn, api.ExecControl{Type: "started"}); err != nil {
		return nil
	}
	outputs := pumpOutputs(ctx, conn, proc)
	// When the client goes away the context ends, and the process with it.
	go func() {
		defer cancel()
		readClient(ctx, conn, proc, req.Stdin)
	}()
	res, err := proc.Wait()
	outputs.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("exec in vm %s: %w", ref, err)
	}
	return sendControl(ctx, conn, api.ExecControl{Type: "exit", ExitCode: res.ExitCode, Signaled: res.Signal, TimedOut: res.TimedOut})
}

// readExecRequest reads and checks the first message of an exec.
func readExecRequest(ctx context.Context, conn *websocket.Conn) (api.ExecRequest, error) {
	var req api.ExecRequest
	typ, msg, err := conn.Read(ctx)
	if err != nil {
		return req, fmt.Errorf("read exec request: %w", err)
	}
	if typ != websocket.MessageText {
		return req, fmt.Errorf("the first message must be a JSON exec request: %w", errdefs.ErrInvalid)
	}
	if err := json.Unmarshal(msg, &req); err != nil {
		return req, fmt.Errorf("exec request: %v: %w", err, errdefs.ErrInvalid)
	}
	return req, validateExec(req)
}

// pumpOutputs streams the process's stdout and stderr to the client as
// data frames; the WaitGroup is done when both reached their end.
func pumpOutputs(ctx context.Context, conn *websocket.Conn, proc *agent.Process) *sync.WaitGroup {
	// Writes to a websocket must not interleave.
	var wmu sync.Mutex
	write := func(stream byte, p []byte) error {
		frame := make([]byte, 1+len(p))
		frame[0] = stream
		copy(frame[1:], p)
		wmu.Lock()
		defer wmu.Unlock()
		return conn.Write(ctx, websocket.MessageBinary, frame)
	}
	var outputs sync.WaitGroup
	pump := func(stream byte, rd io.Reader) {
		defer outputs.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := rd.Read(buf)
			if n > 0 && write(stream, buf[:n]) != nil {
				io.Copy(io.Discard, rd)
				return
			}
			if err != nil {
				return
			}
		}
	}
	outputs.Add(2)
	go pump(api.StreamStdout, proc.Stdout())
	go pump(api.StreamStderr, proc.Stderr())
	return &outputs
}

// readClient passes the client's stdin frames and controls (resize,
// signal) to the process until the client goes away.
func readClient(ctx context.Context, conn *websocket.Conn, proc *agent.Process, stdinOpen bool) {
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			return
		}
		switch typ {
		case websocket.MessageBinary:
			if len(msg) == 0 || msg[0] != api.StreamStdin || !stdinOpen {
				continue
			}
			if len(msg) == 1 {
				proc.Stdin().Close()
				stdinOpen = false
				continue
			}
			if _, err := proc.Stdin().Write(msg[1:]); err != nil {
				stdinOpen = false
			}
		case websocket.MessageText:
			var c api.ExecControl
			if json.Unmarshal(msg, &c) != nil {
				continue
			}
			switch c.Type {
			case "resize":
				proc.Resize(c.Rows, c.Cols)
			case "signal":
				if c.Signal > 0 && c.Signal < 65 {
					proc.Signal(syscall.Signal(c.Signal))
				}
			}
		}
	}
}
