package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
)

// CommitListOptions are those of `vers commit ls` and `vers commit history`.
type CommitListOptions struct {
	f      *Factory
	Client clientFunc
	// Commit is history's commit; ls has none.
	Commit string
	Format string
	Quiet  bool
}

func NewCmdCommitLs(f *Factory, runF func(context.Context, *CommitListOptions) error) *cobra.Command {
	opts := &CommitListOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the commits, newest first",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dispatch(cmd, opts.Format, opts, runF, runCommitLs)
		},
	}
	listFlags(cmd, &opts.Format, &opts.Quiet, "print only commit ids")
	return cmd
}

func NewCmdCommitHistory(f *Factory, runF func(context.Context, *CommitListOptions) error) *cobra.Command {
	opts := &CommitListOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "history COMMIT",
		ValidArgsFunction: completeArgs(f, false, commitArgs),
		Short:             "Show COMMIT and the commits it descends from, newest first",
		Args:              usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Commit = args[0]
			if opts.Commit == "" {
				return errNoCommit
			}
			return dispatch(cmd, opts.Format, opts, runF, runCommitHistory)
		},
	}
	listFlags(cmd, &opts.Format, &opts.Quiet, "print only commit ids")
	return cmd
}

var errNoCommit = fmt.Errorf("the commit is empty: give a tag, a commit id or a unique id prefix: %w", errUsage)

// listFlags are the flags of a command whose output is a list.
func listFlags(cmd *cobra.Command, format *string, quiet *bool, quietHelp string) {
	cmd.Flags().StringVar(format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVarP(quiet, "quiet", "q", false, quietHelp)
}

// dispatch checks a command's --format and runs it: runF when a test gives
// one, run otherwise.
func dispatch[O any](cmd *cobra.Command, format string, opts *O, runF, run func(context.Context, *O) error) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	if runF != nil {
		return runF(cmd.Context(), opts)
	}
	return run(cmd.Context(), opts)
}

func runCommitLs(ctx context.Context, o *CommitListOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	list, err := c.ListCommits(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 && o.Format == "text" && !o.Quiet {
		fmt.Fprintln(o.f.Out, "No commits. `vers commit` makes one of HEAD.")
		return nil
	}
	return o.print(list)
}

func runCommitHistory(ctx context.Context, o *CommitListOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	list, err := c.CommitHistory(ctx, o.Commit)
	if err != nil {
		return err
	}
	return o.print(list)
}

func (o *CommitListOptions) print(list []api.Commit) error {
	switch {
	case o.Format == "json":
		if list == nil {
			list = []api.Commit{}
		}
		return json.NewEncoder(o.f.Out).Encode(list)
	case o.Quiet:
		ids := make([]string, len(list))
		for i, cm := range list {
			ids[i] = cm.ID
		}
		printIDs(o.f.Out, ids)
		return nil
	}
	return commitTable(o.f.Out, list, time.Now())
}
