package cli

// Fan-out: one command run in many VMs at once (`vers execute --on`,
// `--children`, `--tree`, `vers compare`, `vers diff --exec`). Each VM's
// run is independent: a VM that cannot run the command is a row with its
// error, never the end of the others.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/fanout"
)

// defaultMaxOutput is how much of each of a row's streams is kept.
const defaultMaxOutput = fanout.DefaultMaxOutput

// fanSpec says which VMs a fan-out runs in (--on, --children, --tree).
type fanSpec struct{ fanout.Spec }

func (s fanSpec) set() bool { return s.Set() }

func (s fanSpec) check() error {
	n := 0
	for _, b := range []bool{len(s.On) > 0, s.Children != "", s.Tree != ""} {
		if b {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give one of --on, --children and --tree: %w", errUsage)
	}
	if slices.Contains(s.On, "") {
		return fmt.Errorf("--on has an empty VM name; give aliases or ids separated by commas: %w", errUsage)
	}
	return nil
}

// targets resolves the spec into VMs, before anything runs.
func (s fanSpec) targets(ctx context.Context, c Daemon) ([]api.VM, error) {
	return s.Spec.Targets(ctx, c, "--")
}

// fanFlags are the flags of a command that runs one command in several
// VMs (compare, diff --exec): its limits and environment in each.
type fanFlags struct {
	Timeout   time.Duration
	Env       []string
	Dir       string
	MaxOutput int64
}

func (f *fanFlags) bind(fl *pflag.FlagSet) {
	fl.DurationVar(&f.Timeout, "timeout", 0, "kill the command in a VM after this long (e.g. 30s)")
	fl.StringArrayVarP(&f.Env, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	fl.StringVarP(&f.Dir, "workdir", "w", "", "working directory in the VMs (default /root)")
	fl.Int64Var(&f.MaxOutput, "max-output", defaultMaxOutput, "bytes of each stream kept per VM")
}

func (f *fanFlags) check() error {
	switch {
	case f.Timeout < 0:
		return fmt.Errorf("--timeout must not be negative: %w", errUsage)
	case f.MaxOutput <= 0:
		return fmt.Errorf("--max-output must be positive: %w", errUsage)
	}
	if err := api.CheckEnv(f.Env); err != nil {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	return nil
}

// run is how command runs in each VM.
func (f *fanFlags) run(command string) fanRun {
	return fanRun{Timeout: f.Timeout, MaxOutput: f.MaxOutput,
		Req: api.ExecRequest{Command: command, Env: f.Env, Dir: f.Dir, TimeoutMS: timeoutMillis(f.Timeout)}}
}

// fanRun is one command and how to run it in each VM.
type fanRun struct {
	Req     api.ExecRequest
	Timeout time.Duration
	// Resume resumes a paused VM first.
	Resume    bool
	MaxOutput int64
}

// run runs the command in every VM, at most fanout.Parallel at once, and
// returns the rows in the order of vms, grouped.
func (r fanRun) run(ctx context.Context, c Daemon, vms []api.VM) api.FanoutResult {
	one := func(ctx context.Context, v api.VM) api.FanoutRow { return r.one(ctx, c, v) }
	failed := func(v api.VM, err error) api.FanoutRow { return failedRow(v, 0, err) }
	return fanout.Run(ctx, r.Req.Command, vms, one, failed)
}

// one runs the command in v.
func (r fanRun) one(ctx context.Context, c Daemon, v api.VM) api.FanoutRow {
	start := time.Now()
	if r.Resume {
		if err := resumeFirst(ctx, c, v.ID); err != nil {
			return failedRow(v, time.Since(start), err)
		}
	}
	ctx, cancel := execDeadline(ctx, r.Timeout)
	defer cancel(nil)
	limit := r.MaxOutput
	if limit <= 0 {
		limit = defaultMaxOutput
	}
	stdout, stderr := &fanout.CappedBuffer{Max: limit}, &fanout.CappedBuffer{Max: limit}
	res, err := c.Exec(ctx, v.ID, r.Req, client.ExecIO{Stdout: stdout, Stderr: stderr})
	took := time.Since(start)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return failedRow(v, took, pausedHint(ctx, c, v.ID, err))
	}
	return api.FanoutRow{
		VM: vmRef(v), ExitCode: res.ExitCode, TimedOut: res.TimedOut,
		Stdout: stdout.String(), Stderr: stderr.String(), DurationMillis: took.Milliseconds(),
		DroppedBytes: stdout.Dropped() + stderr.Dropped(),
	}
}

// execDeadline is the CLI's own deadline for a command given timeout: a
// guest that never reports the kill (a stopped VM, a lost agent) must not
// keep vers waiting. No timeout is no deadline.
func execDeadline(ctx context.Context, timeout time.Duration) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if timeout <= 0 {
		return ctx, cancel
	}
	ctx, stop := context.WithTimeoutCause(ctx, timeout+timeoutGrace,
		fmt.Errorf("command did not end within --timeout %s; vers stopped waiting and it is being killed: %w", timeout, errdefs.ErrTimeout))
	return ctx, func(err error) { stop(); cancel(err) }
}

// failedRow is the row of a VM vers could not run the command in.
func failedRow(v api.VM, took time.Duration, err error) api.FanoutRow {
	return api.FanoutRow{VM: vmRef(v), ExitCode: ExitSession, DurationMillis: took.Milliseconds(),
		Error: &api.Error{Code: errorCode(err), Message: message(err)}}
}

func vmRef(v api.VM) api.VMRef { return fanout.Ref(v) }

// refLabel names a VM in a table: its alias, or its short id; a VM a diff
// started from a commit by the commit.
func refLabel(r api.VMRef) string {
	switch {
	case r.Commit != "":
		return "commit " + shortID(r.Commit)
	case r.Alias != "":
		return r.Alias
	}
	return shortID(r.ID)
}

// runFanout is execute with --on, --children or --tree: the command in
// every VM named, at once, then one table (or one api.FanoutResult). vers
// exits with the highest of the rows' codes.
func (o *ExecuteOptions) runFanout(ctx context.Context, c Daemon) error {
	if err := o.resolve(nil); err != nil || o.help {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := cancelOnSignal(ctx, cancel, o.Signals)
	defer stop()
	vms, err := o.Fan.targets(ctx, c)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return cause // a signal while the VMs were looked up
		}
		return err
	}
	run := fanRun{Timeout: o.Timeout, Resume: o.Resume, MaxOutput: o.MaxOutput,
		Req: api.ExecRequest{Command: o.Command, Env: o.Env, Dir: o.Dir, TimeoutMS: timeoutMillis(o.Timeout)}}
	res := run.run(ctx, c, vms)
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if o.Format == "json" {
		if err := json.NewEncoder(o.f.Out).Encode(res); err != nil {
			return err
		}
	} else {
		writeFanTable(o.f.Out, res, o.Output == "full")
	}
	if res.ExitCode != 0 {
		return &ExitErr{Code: res.ExitCode}
	}
	return nil
}

// cancelOnSignal ends ctx at the first Ctrl-C, SIGTERM or SIGHUP: the
// commands of a fan-out are many, so none gets the signal for itself, and
// ending ctx closes their sessions, which kills them.
func cancelOnSignal(ctx context.Context, cancel context.CancelCauseFunc, signals func() (<-chan os.Signal, func())) func() {
	sigs, stop := signals()
	go func() {
		select {
		case <-ctx.Done():
		case s := <-sigs:
			cancel(fmt.Errorf("ended by %v; the commands are being killed: %w", s, errCancelled))
		}
	}()
	return stop
}
