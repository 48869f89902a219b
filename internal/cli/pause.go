package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

// PauseOptions are those of `vers pause` and `vers resume`, which differ
// only in Resume.
type PauseOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	Format string
	Resume bool
}

func NewCmdPause(f *Factory, runF func(context.Context, *PauseOptions) error) *cobra.Command {
	return newCmdPauseResume(f, false, runF, &cobra.Command{
		Use:               "pause [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Stop HEAD's or VM's CPUs, keeping its memory, until `vers resume`",
		Long: `Stop the VM's CPUs (HEAD when none is named); its memory, disk and
processes stay as they are, and its state is paused until ` + "`vers resume`" + `:
also across a restart of versd, which never resumes it by itself. Commands
already running in it stall, and go on once it is resumed.

While it is paused, vers execute, vers connect and vers cp in it are refused
(exit 4, or 255 with "vers: conflict:" for execute and connect; those two
take --resume to resume it first). It can be branched — it stays paused and
its children run — and killed. Pausing a paused VM does nothing.`,
	})
}

func NewCmdResume(f *Factory, runF func(context.Context, *PauseOptions) error) *cobra.Command {
	return newCmdPauseResume(f, true, runF, &cobra.Command{
		Use:               "resume [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Run HEAD or VM again after `vers pause`",
		Long: `Run the paused VM's CPUs again (HEAD when none is named), from where they
stopped. Resuming a running VM does nothing.`,
	})
}

func newCmdPauseResume(f *Factory, resume bool, runF func(context.Context, *PauseOptions) error, cmd *cobra.Command) *cobra.Command {
	opts := &PauseOptions{f: f, Client: f.Client, Resume: resume}
	cmd.Args = usageArgs(cobra.MaximumNArgs(1))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vm, err := vmArg(args)
		if err != nil {
			return err
		}
		opts.VM = vm
		if err := checkFormat(opts.Format); err != nil {
			return err
		}
		if runF != nil {
			return runF(cmd.Context(), opts)
		}
		return runPause(cmd.Context(), opts)
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (the VM)")
	return cmd
}

func runPause(ctx context.Context, o *PauseOptions) error {
	before, v, err := o.pause(ctx)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(v)
	}
	name := label(v)
	switch {
	case !o.Resume && userPaused(before):
		fmt.Fprintf(o.f.Out, "%s is already paused; `vers resume %s` runs it again\n", name, name)
	case !o.Resume:
		fmt.Fprintf(o.f.Out, "Paused %s; `vers resume %s` runs it again\n", name, name)
	case before.State == api.StateRunning:
		fmt.Fprintf(o.f.Out, "%s is already running\n", name)
	default:
		fmt.Fprintf(o.f.Out, "Resumed %s\n", name)
	}
	return nil
}

// pause is `vers pause` (or resume) without its printing: the VM before
// and after.
func (o *PauseOptions) pause(ctx context.Context) (before, after api.VM, err error) {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return before, after, err
	}
	before, err = c.GetVM(ctx, ref)
	if err != nil {
		return before, after, headGone(ref, o.VM == "", err)
	}
	act := c.Pause
	if o.Resume {
		act = c.Resume
	}
	after, err = act(ctx, before.ID)
	return before, after, err
}

// userPaused reports whether v is paused by `vers pause` (not by a full disk).
func userPaused(v api.VM) bool {
	return v.State == api.StatePaused && v.StateReason == api.ReasonPaused
}

// resumeFirst resumes ref if it is paused: the --resume of the commands that
// run something in a VM.
func resumeFirst(ctx context.Context, c Daemon, ref string) error {
	v, err := c.GetVM(ctx, ref)
	if err != nil || v.State != api.StatePaused {
		return err
	}
	_, err = c.Resume(ctx, v.ID)
	return err
}

// pausedHint turns the refusal of a command in a VM a user paused into what
// to do about it, --resume included.
func pausedHint(ctx context.Context, c Daemon, ref string, err error) error {
	if !errors.Is(err, errdefs.ErrConflict) {
		return err
	}
	v, gerr := c.GetVM(ctx, ref)
	if gerr != nil || !userPaused(v) {
		return err
	}
	return fmt.Errorf("vm %s is paused; `vers resume %s` runs it again, or pass --resume: %w", label(v), label(v), errdefs.ErrConflict)
}
