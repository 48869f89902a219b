package agent

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/yamux"
)

// Process is a process started in the guest by Client.Start.
type Process struct {
	c      *Client
	ctrl   *yamux.Stream
	stdin  *yamux.Stream
	stdout *outReader
	stderr *outReader // nil for TTY

	ctrlMu sync.Mutex // serializes control messages

	exited chan struct{} // closed when the exit event arrived or the control stream ended
	result Result
	err    error

	closeOnce sync.Once
}

// Start starts a process in the guest. A program that cannot be started is
// not an error here: like a shell, it ends with exit code 127 or 126 and the
// reason on stderr.
func (c *Client) Start(ctx context.Context, req ExecRequest) (*Process, error) {
	id := newID()
	ctrl, err := c.open(ctx, request{Op: opExec, ID: id, Exec: &req})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	p := &Process{c: c, ctrl: ctrl, exited: make(chan struct{})}
	streams := []*yamux.Stream{ctrl}
	fail := func(err error) (*Process, error) {
		for _, st := range streams {
			st.Close()
		}
		return nil, fmt.Errorf("exec: %w", err)
	}
	nfd := 3
	if req.TTY {
		nfd = 2
	}
	for fd := 0; fd < nfd; fd++ {
		st, err := c.open(ctx, request{Op: opStdio, ID: id, FD: fd})
		if err != nil {
			return fail(err)
		}
		streams = append(streams, st)
	}
	var rep reply
	if err := c.readReply(ctx, ctrl, &rep); err != nil {
		return fail(err)
	}
	if err := rep.err("start"); err != nil {
		return fail(err)
	}
	p.stdin = streams[1]
	p.stdout = newOutReader(streams[2])
	if !req.TTY {
		p.stderr = newOutReader(streams[3])
	}
	go p.readEvents()
	return p, nil
}

// readEvents waits for the exit event.
func (p *Process) readEvents() {
	defer close(p.exited)
	for {
		var ev event
		if err := readMsg(p.ctrl, &ev); err != nil {
			p.err = fmt.Errorf("wait: process status lost: %w", p.c.wrap(unexpected(err)))
			return
		}
		if ev.Exit != nil {
			p.result = *ev.Exit
			return
		}
	}
}

// Stdin is the process's standard input. Closing it sends EOF to the process;
// on a TTY it only ends the input (an end-of-file character is typed if the
// terminal is in canonical mode) and the session goes on until the process exits.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Stdout streams the process's standard output (the terminal output for a TTY).
func (p *Process) Stdout() io.Reader { return p.stdout }

// Stderr streams the process's standard error; for a TTY it is empty.
func (p *Process) Stderr() io.Reader {
	if p.stderr == nil {
		return strings.NewReader("")
	}
	return p.stderr
}

// Resize changes the terminal size of a TTY process.
func (p *Process) Resize(rows, cols uint16) error {
	return p.sendControl(control{Resize: &winsize{Rows: rows, Cols: cols}})
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if sig <= 0 {
		return fmt.Errorf("signal %d: %w", sig, ErrInvalid)
	}
	return p.sendControl(control{Signal: int(sig)})
}

func (p *Process) sendControl(m control) error {
	select {
	case <-p.exited:
		return fmt.Errorf("process has exited")
	default:
	}
	p.ctrlMu.Lock()
	defer p.ctrlMu.Unlock()
	return p.c.wrap(writeMsg(p.ctrl, m))
}

// Wait returns after the process exited AND all of its stdout and stderr has
// been read from Stdout and Stderr (to EOF): the caller must keep reading them.
func (p *Process) Wait() (Result, error) {
	<-p.exited
	<-p.stdout.done
	if p.stderr != nil {
		<-p.stderr.done
	}
	p.closeStreams()
	if p.err != nil {
		return Result{}, p.err
	}
	return p.result, nil
}

// Close abandons the process: it is killed in the guest if still running.
func (p *Process) Close() error {
	p.closeStreams()
	return nil
}

func (p *Process) closeStreams() {
	p.closeOnce.Do(func() {
		p.ctrl.Close()
		p.stdin.Close()
		p.stdout.st.Close()
		if p.stderr != nil {
			p.stderr.st.Close()
		}
	})
}

// outReader reads one output stream and records when it reached its end.
type outReader struct {
	st   *yamux.Stream
	done chan struct{}
	once sync.Once
}

func newOutReader(st *yamux.Stream) *outReader {
	return &outReader{st: st, done: make(chan struct{})}
}

func (o *outReader) Read(b []byte) (int, error) {
	n, err := o.st.Read(b)
	if err != nil {
		o.once.Do(func() { close(o.done) })
	}
	return n, err
}
