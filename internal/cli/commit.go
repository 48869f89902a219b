package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"vers/api"
)

type CommitOptions struct {
	f       *Factory
	Client  clientFunc
	VM      string
	Tag     string
	Message string
	Format  string
	Quiet   bool
}

// NewCmdCommit is `vers commit [VM]`, and the commands that manage commits
// as its subcommands. A subcommand's name wins over a VM of that name;
// `vers commit -- ls` commits a VM called ls.
func NewCmdCommit(f *Factory, runF func(context.Context, *CommitOptions) error) *cobra.Command {
	opts := &CommitOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "commit [VM] [--tag NAME] [-m MESSAGE]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Save the whole running state of HEAD or VM on disk, to start again from later",
		Long: `Save the whole state of the VM (HEAD when none is named) as a commit: its
memory, CPU and device state and disk, at one instant, on persistent
storage. The VM pauses for milliseconds, as for a branch, and runs on. A
commit never changes, and outlives the VM. Commits share the parts they
have in common: a commit adds to the disk only what no other commit holds.

Start VMs from a commit with ` + "`vers run-commit`" + ` or ` + "`vers branch COMMIT`" + `, put a
VM back to it with ` + "`vers restore`" + `, name it with ` + "`vers tag`" + `, move it to another
host with ` + "`vers commit export`" + ` and ` + "`vers commit import`" + `.

A subcommand's name wins over a VM of that name: ` + "`vers commit -- ls`" + ` commits
a VM called ls.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, err := vmArg(args)
			if err != nil {
				return err
			}
			opts.VM = vm
			return dispatch(cmd, opts.Format, opts, runF, runCommit)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Tag, "tag", "", "give the commit the tag `NAME` (usable wherever a commit is)")
	fl.StringVarP(&opts.Message, "message", "m", "", "say what the commit holds")
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print only the commit id")
	cmd.AddCommand(
		NewCmdCommitLs(f, nil),
		NewCmdCommitHistory(f, nil),
		NewCmdCommitRm(f, nil),
		NewCmdCommitGC(f, nil),
		NewCmdCommitDu(f, nil),
		NewCmdCommitExport(f, nil),
		NewCmdCommitImport(f, nil),
	)
	return cmd
}

func runCommit(ctx context.Context, o *CommitOptions) error {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	if o.Format == "text" && !o.Quiet {
		fmt.Fprintf(o.f.ErrOut, "Committing %s...\n", ref)
	}
	res, err := c.Commit(ctx, ref, api.CommitRequest{Tag: o.Tag, Message: o.Message})
	if err != nil {
		return stopped(ctx, "commit", headGone(ref, o.VM == "", err))
	}
	switch {
	case o.Format == "json":
		return json.NewEncoder(o.f.Out).Encode(res)
	case o.Quiet:
		fmt.Fprintln(o.f.Out, res.Commit.ID)
		return nil
	}
	cm := res.Commit
	fmt.Fprintf(o.f.Out, "Committed %s: %s logical, %s added, paused %.1f ms, %.1f s\n",
		commitName(cm), formatBytes(cm.LogicalBytes), formatBytes(cm.AddedBytes),
		res.PauseMillis, float64(res.TotalMillis)/1000)
	return nil
}
