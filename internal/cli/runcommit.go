package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/project"
)

type RunCommitOptions struct {
	f      *Factory
	Client clientFunc
	Commit string
	Alias  string
	Format string
	Quiet  bool
}

func NewCmdRunCommit(f *Factory, runF func(context.Context, *RunCommitOptions) error) *cobra.Command {
	opts := &RunCommitOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "run-commit COMMIT|TAG [--vm-alias NAME]",
		ValidArgsFunction: completeArgs(f, false, commitArgs),
		Short:             "Start a VM from a commit, in the state it was committed in, and make it HEAD",
		Long: `Start a VM from COMMIT (a tag, an id or a unique id prefix): it runs on from
the instant the commit was made, with its memory, processes and disk as they
were then. It becomes HEAD of the project here, as with ` + "`vers run`" + `.
` + "`vers branch COMMIT --count N`" + ` starts several.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Commit = args[0]
			if opts.Commit == "" {
				return errNoCommit
			}
			return dispatch(cmd, opts.Format, opts, runF, runRunCommit)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Alias, "vm-alias", "", "name for the new VM (unique on this host)")
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print only the VM id")
	return cmd
}

func runRunCommit(ctx context.Context, o *RunCommitOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	if o.Format == "text" && !o.Quiet {
		fmt.Fprintf(o.f.ErrOut, "Starting a VM from commit %s...\n", o.Commit)
	}
	res, head, err := runFromCommit(ctx, o.f, c, o.Commit, o.Alias)
	if err != nil {
		return err
	}
	v := res.VMs[0]
	switch {
	case o.Format == "json":
		return json.NewEncoder(o.f.Out).Encode(res)
	case o.Quiet:
		fmt.Fprintln(o.f.Out, v.ID)
		return nil
	}
	printRunning(o.f.Out, v, time.Duration(res.FirstReadyMillis)*time.Millisecond, head)
	fmt.Fprintf(o.f.Out, "From commit %s, restored in %d ms.\n", commitName(res.Commit), res.RestoreMillis)
	return nil
}

// runFromCommit is `vers run-commit` without its printing: it starts a VM
// from commit and makes it HEAD of the project here, if there is one
// (head says so); outside a project the VM runs all the same.
func runFromCommit(ctx context.Context, f *Factory, c Daemon, commit, alias string) (api.RunCommitResponse, bool, error) {
	p, err := f.Project()
	if err != nil && !errors.Is(err, project.ErrNoProject) {
		return api.RunCommitResponse{}, false, err
	}
	res, err := c.RunCommit(ctx, commit, api.RunCommitRequest{Alias: alias, Count: 1})
	if err != nil {
		return res, false, stopped(ctx, "run-commit", err)
	}
	if len(res.VMs) == 0 {
		return res, false, fmt.Errorf("versd started no VM from commit %s", commit)
	}
	if p == nil {
		return res, false, nil
	}
	if err := moveHead(ctx, c, p, res.VMs[0].ID); err != nil {
		return res, false, fmt.Errorf("VM %s is running but HEAD could not be set: %w", res.VMs[0].ID, err)
	}
	return res, true, nil
}
