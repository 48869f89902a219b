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

type BranchOptions struct {
	f        *Factory
	Client   clientFunc
	VM       string
	Alias    string
	Checkout bool
	Count    int
	Format   string
}

func NewCmdBranch(f *Factory, runF func(context.Context, *BranchOptions) error) *cobra.Command {
	opts := &BranchOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "branch [VM|COMMIT|TAG] [--alias NAME] [-c] [--count N]",
		ValidArgsFunction: completeArgs(f, false, vmCommitArgs),
		Short:             "Branch HEAD or VM while it runs, or a commit: children start from its exact state",
		Long: `Branch the running VM (HEAD when none is named). The parent pauses only while
its memory, CPU and device state and disk are frozen, then resumes by itself;
each child starts from exactly that instant. A parent paused with vers pause
stays paused, and its children run. HEAD moves to the child only with -c.
With --count N, N children come from one snapshot (named NAME-1 … NAME-N
with --alias).

A commit or tag (see ` + "`vers commit`" + `) is branched the same way: the children
start from the state it holds. A VM of that name wins over a tag.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, err := vmArg(args)
			if err != nil {
				return err
			}
			opts.VM = vm
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if opts.Count < 1 {
				return fmt.Errorf("--count must be at least 1: %w", errdefs.ErrInvalid)
			}
			if opts.Checkout && opts.Count > 1 {
				return fmt.Errorf("-c checks out one child; with --count %d name the one to check out with `vers checkout`: %w", opts.Count, errUsage)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runBranch(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Alias, "alias", "", "alias of the new VM (with --count: prefix of NAME-1 … NAME-N)")
	cmd.Flags().BoolVarP(&opts.Checkout, "checkout", "c", false, "move HEAD to the new VM")
	cmd.Flags().IntVar(&opts.Count, "count", 1, "number of children to make from one snapshot")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runBranch(ctx context.Context, o *BranchOptions) error {
	b, err := o.branch(ctx)
	if err != nil {
		return err
	}
	if b.Commit != nil {
		res := b.Commit
		if o.Format == "json" {
			return json.NewEncoder(o.f.Out).Encode(res)
		}
		o.printChildren("commit "+commitName(res.Commit), res.VMs, fmt.Sprintf("Restored in %d ms", res.RestoreMillis), res.FirstReadyMillis, res.AllReadyMillis)
		return nil
	}
	res := b.VM
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	lead := fmt.Sprintf("Parent paused %.1f ms", res.PauseMillis)
	if userPaused(res.Parent) {
		lead = "Parent stays paused"
	}
	o.printChildren(label(res.Parent), res.Children, lead, res.FirstReadyMillis, res.AllReadyMillis)
	return nil
}

// Branched is what a branch started: children of a running VM, or VMs
// started from a commit (or tag) that names no VM. One of the two is set.
type Branched struct {
	VM     *api.BranchResponse
	Commit *api.RunCommitResponse
}

// Children are the VMs the branch started.
func (b Branched) Children() []api.VM {
	if b.Commit != nil {
		return b.Commit.VMs
	}
	return b.VM.Children
}

// branch is `vers branch` without its printing: it branches the VM (or the
// commit) and moves HEAD to the child with -c.
func (o *BranchOptions) branch(ctx context.Context) (Branched, error) {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return Branched{}, err
	}
	res, err := c.Branch(ctx, ref, api.BranchRequest{Alias: o.Alias, Count: o.Count})
	if err != nil && o.VM != "" && errors.Is(err, errdefs.ErrNotFound) {
		return o.branchCommit(ctx, c)
	}
	if err != nil {
		return Branched{}, headGone(ref, o.VM == "", err)
	}
	return Branched{VM: &res}, o.checkout(ctx, c, res.Children)
}

// branchCommit starts the children from commit or tag o.VM, which names
// no VM: a branch of a commit. A VM of that name would win.
func (o *BranchOptions) branchCommit(ctx context.Context, c Daemon) (Branched, error) {
	res, err := c.RunCommit(ctx, o.VM, api.RunCommitRequest{Alias: o.Alias, Count: o.Count})
	if errors.Is(err, errdefs.ErrNotFound) {
		return Branched{}, fmt.Errorf("no VM, commit or tag is named %q: `vers status` lists the VMs, `vers commit ls` the commits: %w", o.VM, errdefs.ErrNotFound)
	}
	if err != nil {
		return Branched{}, err
	}
	return Branched{Commit: &res}, o.checkout(ctx, c, res.VMs)
}

// checkout moves HEAD to the first child with -c.
func (o *BranchOptions) checkout(ctx context.Context, c Daemon, children []api.VM) error {
	if !o.Checkout {
		return nil
	}
	if len(children) == 0 {
		return fmt.Errorf("versd started no VM")
	}
	p, err := o.f.Project()
	if err != nil {
		return err
	}
	return moveHead(ctx, c, p, children[0].ID)
}

// printChildren says what a branch of from started: lead (the pause, or
// the restore), then the time to the first and to the last child.
func (o *BranchOptions) printChildren(from string, children []api.VM, lead string, firstMs, allMs int64) {
	w := o.f.Out
	for _, ch := range children {
		fmt.Fprintf(w, "Branched %s -> %s (id %s)\n", from, aliasOrNone(ch), ch.ID)
	}
	fmt.Fprintf(w, "%s; first child ready in %d ms", lead, firstMs)
	if len(children) > 1 {
		fmt.Fprintf(w, ", all %d in %d ms", len(children), allMs)
	}
	fmt.Fprintln(w, ".")
	if o.Checkout && len(children) > 0 {
		fmt.Fprintf(w, "HEAD -> %s\n", label(children[0]))
	}
}
