package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/fanout"
	"vers/internal/vm"
)

// fanoutGrace is how long past its timeout a VM's command is waited for
// before its row says so: a guest that never reports the kill (a lost
// agent) costs its row, not the request.
const fanoutGrace = 5 * time.Second

// Fanouts is what POST /v1/fanout needs of the domain: the VMs, and a
// command run in one.
type Fanouts interface {
	Get(ctx context.Context, ref string) (api.VM, error)
	List(ctx context.Context) ([]api.VM, error)
	Exec(ctx context.Context, ref string, req agent.ExecRequest) (Process, error)
}

// Process is a command running in a VM (*agent.Process).
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	Stderr() io.Reader
	Wait() (agent.Result, error)
	Close() error
}

var _ Process = (*agent.Process)(nil)

// vmFanouts is the vm.Manager as Fanouts.
type vmFanouts struct{ *vm.Manager }

func (v vmFanouts) Exec(ctx context.Context, ref string, req agent.ExecRequest) (Process, error) {
	return v.Manager.Exec(ctx, ref, req)
}

// runFanout runs one command in many VMs at once (POST /v1/fanout), as
// `vers execute --tree` does from the CLI, through the same run and
// grouping (internal/fanout).
func (s *Server) runFanout(w http.ResponseWriter, r *http.Request) {
	var req api.FanoutRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkFanout(&req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	spec := fanout.Spec{On: req.On, Children: req.Children, Tree: req.Tree}
	vms, err := spec.Targets(ctx, vmSource{s.fanouts}, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(vms) > api.MaxFanoutVMs {
		s.writeError(w, r, fmt.Errorf("%d VMs named, at most %d at once: %w", len(vms), api.MaxFanoutVMs, errdefs.ErrInvalid))
		return
	}
	one := func(ctx context.Context, v api.VM) api.FanoutRow { return s.fanOne(ctx, req, v) }
	res := fanout.Run(ctx, req.Command, vms, one, func(v api.VM, err error) api.FanoutRow { return fanFailed(v, 0, err) })
	if ctx.Err() != nil {
		return // the client went away
	}
	writeJSON(w, http.StatusOK, res)
}

// checkFanout refuses a request that names no command, not exactly one set
// of VMs, or limits out of range; it sets the defaults.
func checkFanout(req *api.FanoutRequest) error {
	n := 0
	for _, set := range []bool{len(req.On) > 0, req.Children != "", req.Tree != ""} {
		if set {
			n++
		}
	}
	switch {
	case req.Command == "":
		return fmt.Errorf("nothing to run: give the command: %w", errdefs.ErrInvalid)
	case n != 1:
		return fmt.Errorf("name the VMs with exactly one of on, children and tree: %w", errdefs.ErrInvalid)
	case len(req.On) > api.MaxFanoutVMs:
		return fmt.Errorf("%d VMs named, at most %d at once: %w", len(req.On), api.MaxFanoutVMs, errdefs.ErrInvalid)
	case req.TimeoutMS < 0 || req.TimeoutMS > api.MaxFanoutTimeoutMS:
		return fmt.Errorf("timeout_ms %d: give 1 to %d (0 for the default, %d): %w", req.TimeoutMS, api.MaxFanoutTimeoutMS, api.DefaultFanoutTimeoutMS, errdefs.ErrInvalid)
	case req.MaxOutput < 0 || req.MaxOutput > api.MaxFanoutOutput:
		return fmt.Errorf("max_output %d: give 1 to %d bytes (0 for 1 MiB): %w", req.MaxOutput, api.MaxFanoutOutput, errdefs.ErrInvalid)
	}
	for _, ref := range req.On {
		if ref == "" {
			return fmt.Errorf("on has an empty VM name: %w", errdefs.ErrInvalid)
		}
	}
	if err := api.CheckEnv(req.Env); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	if req.TimeoutMS == 0 {
		req.TimeoutMS = api.DefaultFanoutTimeoutMS
	}
	if req.MaxOutput == 0 {
		req.MaxOutput = fanout.DefaultMaxOutput
	}
	return nil
}

// fanOne runs the request's command in v, its output kept to the cap.
func (s *Server) fanOne(ctx context.Context, req api.FanoutRequest, v api.VM) api.FanoutRow {
	start := time.Now()
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	ctx, cancel := context.WithTimeoutCause(ctx, timeout+fanoutGrace,
		fmt.Errorf("command did not end within its timeout %s; versd stopped waiting: %w", timeout, errdefs.ErrTimeout))
	defer cancel()
	proc, err := s.fanouts.Exec(ctx, v.ID, agent.ExecRequest{Shell: req.Command, Env: req.Env, Dir: req.Dir, Timeout: timeout})
	if err != nil {
		return fanFailed(v, time.Since(start), err)
	}
	defer proc.Close()
	proc.Stdin().Close()
	stdout, stderr := &fanout.CappedBuffer{Max: req.MaxOutput}, &fanout.CappedBuffer{Max: req.MaxOutput}
	var copies sync.WaitGroup
	copies.Go(func() { io.Copy(stdout, proc.Stdout()) })
	copies.Go(func() { io.Copy(stderr, proc.Stderr()) })
	waited := make(chan struct{})
	var res agent.Result
	go func() {
		defer close(waited)
		res, err = proc.Wait()
		copies.Wait()
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		proc.Close() // ends the streams and the wait
		<-waited
		err = context.Cause(ctx)
	}
	took := time.Since(start)
	if err != nil {
		return fanFailed(v, took, fmt.Errorf("in %s: %w", v.ID, err))
	}
	return api.FanoutRow{
		VM: fanout.Ref(v), ExitCode: res.ExitCode, TimedOut: res.TimedOut,
		Stdout: stdout.String(), Stderr: stderr.String(), DurationMillis: took.Milliseconds(),
		DroppedBytes: stdout.Dropped() + stderr.Dropped(),
	}
}

// fanFailed is the row of a VM the command could not run in (exit 255, as
// `vers execute` exits when vers fails).
func fanFailed(v api.VM, took time.Duration, err error) api.FanoutRow {
	return api.FanoutRow{VM: fanout.Ref(v), ExitCode: 255, DurationMillis: took.Milliseconds(),
		Error: &api.Error{Code: errdefs.Code(err), Message: errdefs.Message(err)}}
}

// vmSource is the daemon's VMs as a fan-out looks them up.
type vmSource struct{ f Fanouts }

func (v vmSource) GetVM(ctx context.Context, ref string) (api.VM, error) { return v.f.Get(ctx, ref) }
func (v vmSource) ListVMs(ctx context.Context) ([]api.VM, error)         { return v.f.List(ctx) }
