package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

// VMVerbOptions are those of `vers sleep`, `vers wake` and `vers restore`:
// a verb on one VM that answers with the VM.
type VMVerbOptions struct {
	f      *Factory
	Client clientFunc
	Verb   string // sleep, wake or restore
	VM     string
	// Commit is restore's.
	Commit string
	Format string
}

func NewCmdSleep(f *Factory, runF func(context.Context, *VMVerbOptions) error) *cobra.Command {
	return newVMVerb(f, runF, "sleep", &cobra.Command{
		Use:               "sleep [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Put HEAD or VM to sleep: its state goes to disk and it stops using memory and CPU",
		Long: `Put the VM (HEAD when none is named) to sleep: its whole state is saved as a
commit on disk and its QEMU stops, so it takes no memory or CPU. It keeps its
id and alias; ` + "`vers wake`" + ` brings it back where it was.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
	})
}

func NewCmdWake(f *Factory, runF func(context.Context, *VMVerbOptions) error) *cobra.Command {
	return newVMVerb(f, runF, "wake", &cobra.Command{
		Use:               "wake [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Wake a sleeping VM (HEAD when none is named): it runs on where it stopped",
		Args:              usageArgs(cobra.MaximumNArgs(1)),
	})
}

func NewCmdRestore(f *Factory, runF func(context.Context, *VMVerbOptions) error) *cobra.Command {
	return newVMVerb(f, runF, "restore", &cobra.Command{
		Use:               "restore [VM] COMMIT",
		ValidArgsFunction: completeArgs(f, false, vmCommitArgs, commitArgs),
		Short:             "Put HEAD or VM back to the state a commit holds, in place",
		Long: `Put the VM (HEAD when only COMMIT is given) back to the state COMMIT holds
(a tag, an id or a unique id prefix): memory, processes and disk as they
were when it was made. The VM keeps its id and alias. When the restore
fails the VM runs on as it was.`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
	})
}

// newVMVerb wires cmd as the verb on a VM: an optional VM first, restore's
// COMMIT last.
func newVMVerb(f *Factory, runF func(context.Context, *VMVerbOptions) error, verb string, cmd *cobra.Command) *cobra.Command {
	opts := &VMVerbOptions{f: f, Client: f.Client, Verb: verb}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if verb == "restore" {
			opts.Commit, args = args[len(args)-1], args[:len(args)-1]
			if opts.Commit == "" {
				return errNoCommit
			}
		}
		vm, err := vmArg(args)
		if err != nil {
			return err
		}
		opts.VM = vm
		return dispatch(cmd, opts.Format, opts, runF, runVMVerb)
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runVMVerb(ctx context.Context, o *VMVerbOptions) error {
	ctx, stop := withSignals(ctx)
	defer stop()
	start := time.Now()
	v, err := o.act(ctx)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(v)
	}
	took := time.Since(start).Seconds()
	switch o.Verb {
	case "sleep":
		fmt.Fprintf(o.f.Out, "VM %s (%s) is %s (%.1fs); `vers wake %s` brings it back.\n", label(v), v.ID, v.State, took, label(v))
	case "wake":
		fmt.Fprintf(o.f.Out, "VM %s (%s) is %s (woke in %.1fs).\n", label(v), v.ID, v.State, took)
	default:
		fmt.Fprintf(o.f.Out, "VM %s (%s) is back at commit %s and %s (%.1fs).\n", label(v), v.ID, o.Commit, v.State, took)
	}
	return nil
}

// act is sleep, wake or restore without the printing: the VM afterwards.
func (o *VMVerbOptions) act(ctx context.Context) (api.VM, error) {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return api.VM{}, err
	}
	var v api.VM
	switch o.Verb {
	case "sleep":
		v, err = c.Sleep(ctx, ref)
	case "wake":
		v, err = c.Wake(ctx, ref)
	default:
		v, err = c.Restore(ctx, ref, api.RestoreRequest{Commit: o.Commit})
	}
	if err != nil {
		if o.Verb == "restore" && errors.Is(err, errdefs.ErrNotFound) {
			if _, gerr := c.GetVM(ctx, ref); gerr == nil {
				return v, err
			}
		}
		return v, stopped(ctx, o.Verb, headGone(ref, o.VM == "", err))
	}
	return v, nil
}
