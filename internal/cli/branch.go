package cli

import (
	"context"
	"encoding/json"
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
		Use:   "branch [VM] [--alias NAME] [-c] [--count N]",
		Short: "Branch HEAD or VM while it runs: children start from its exact state",
		Long: `Branch the running VM (HEAD when none is named). The parent pauses only while
its memory, CPU and device state and disk are frozen, then resumes by itself;
each child starts from exactly that instant. A parent paused with vers pause
stays paused, and its children run. HEAD moves to the child only with -c.
With --count N, N children come from one snapshot (named NAME-1 … NAME-N
with --alias).`,
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
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return err
	}
	res, err := c.Branch(ctx, ref, api.BranchRequest{Alias: o.Alias, Count: o.Count})
	if err != nil {
		return headGone(ref, o.VM == "", err)
	}
	if o.Checkout {
		p, err := o.f.Project()
		if err != nil {
			return err
		}
		if err := p.SetHead(res.Children[0].ID); err != nil {
			return err
		}
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	for _, ch := range res.Children {
		name := ch.Alias
		if name == "" {
			name = "(no alias)"
		}
		fmt.Fprintf(o.f.Out, "Branched %s -> %s (id %s)\n", label(res.Parent), name, ch.ID)
	}
	if userPaused(res.Parent) {
		fmt.Fprintf(o.f.Out, "Parent stays paused; first child ready in %d ms", res.FirstReadyMillis)
	} else {
		fmt.Fprintf(o.f.Out, "Parent paused %.1f ms; first child ready in %d ms", res.PauseMillis, res.FirstReadyMillis)
	}
	if len(res.Children) > 1 {
		fmt.Fprintf(o.f.Out, ", all %d in %d ms", len(res.Children), res.AllReadyMillis)
	}
	fmt.Fprintln(o.f.Out, ".")
	if o.Checkout {
		fmt.Fprintf(o.f.Out, "HEAD -> %s\n", label(res.Children[0]))
	}
	return nil
}
