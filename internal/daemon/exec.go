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
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	conn.SetReadLimit(4 << 20)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if err := s.runExec(ctx, conn, ref); err != nil {
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

func (s *Server) runExec(ctx context.Context, conn *websocket.Conn, ref string) error {
	typ, msg, err := conn.Read(ctx)
	if err != nil {
		return fmt.Errorf("read exec request: %w", err)
	}
	if typ != websocket.MessageText {
		return fmt.Errorf("the first message must be a JSON exec request: %w", errdefs.ErrInvalid)
	}
	var req api.ExecRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		return fmt.Errorf("exec request: %v: %w", err, errdefs.ErrInvalid)
	}
	if req.Command == "" && len(req.Argv) == 0 && !req.TTY {
		return fmt.Errorf("nothing to run: give a command: %w", errdefs.ErrInvalid)
	}
	if req.TimeoutMS < 0 {
		return fmt.Errorf("timeout must not be negative: %w", errdefs.ErrInvalid)
	}
	client, v, err := s.vms.Agent(ctx, ref)
	if err != nil {
		return err
	}
	areq := agent.ExecRequest{
		Argv: req.Argv, Shell: req.Command, Env: req.Env, Dir: req.Dir,
		Timeout: time.Duration(req.TimeoutMS) * time.Millisecond,
		TTY:     req.TTY, Rows: req.Rows, Cols: req.Cols, Term: req.Term,
		Login: req.TTY && req.Command == "" && len(req.Argv) == 0,
	}
	proc, err := client.Start(ctx, areq)
	if err != nil {
		if ctx.Err() == nil {
			// The channel may be stale (guest rebooted, agent restarted): redial next time.
			s.vms.DropAgent(v.ID, client)
		}
		return fmt.Errorf("start in vm %s: %w", ref, err)
	}
	defer proc.Close()
	if !req.Stdin {
		proc.Stdin().Close()
	}
	if err := sendControl(ctx, conn, api.ExecControl{Type: "started"}); err != nil {
		return nil
	}

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
			if n > 0 {
				if write(stream, buf[:n]) != nil {
					io.Copy(io.Discard, rd)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	outputs.Add(2)
	go pump(api.StreamStdout, proc.Stdout())
	go pump(api.StreamStderr, proc.Stderr())

	// Client → process: stdin and controls. When the client goes away the
	// context ends and proc.Close kills the process.
	go func() {
		stdinOpen := req.Stdin
		for {
			typ, msg, err := conn.Read(ctx)
			if err != nil {
				cancelOnGone(ctx, proc)
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

func cancelOnGone(ctx context.Context, p *agent.Process) {
	if ctx.Err() != nil {
		p.Close()
	}
}
