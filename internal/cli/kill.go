package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

type KillOptions struct {
	f         *Factory
	Client    clientFunc
	VM        string
	Recursive bool
	Format    string
}

func NewCmdKill(f *Factory, runF func(context.Context, *KillOptions) error) *cobra.Command {
	opts := &KillOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "kill VM [-r]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Stop VM and delete everything it owns (-r: with all its descendants)",
		Args:              usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.VM = args[0]
			if opts.VM == "" {
				return fmt.Errorf("the VM is empty: give its alias, id or a unique id prefix: %w", errUsage)
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runKill(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Recursive, "recursive", "r", false, "also kill every VM branched from it")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runKill(ctx context.Context, o *KillOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	v, err := c.GetVM(ctx, o.VM)
	if err != nil {
		return err
	}
	res, err := c.DeleteVM(ctx, v.ID, o.Recursive)
	// A HEAD that named a killed VM is cleared, so it cannot point at a
	// stranger: also when the kill of a tree failed part way.
	if p, perr := o.f.Project(); perr == nil {
		if head, _ := p.Head(); head != "" {
			for _, id := range res.Deleted {
				if id == head {
					o.f.moveHead(ctx, c, p, "")
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	if len(res.Deleted) == 1 {
		fmt.Fprintf(o.f.Out, "Killed %s (%s)\n", label(v), v.ID)
	} else {
		fmt.Fprintf(o.f.Out, "Killed %s and %d descendant(s)\n", label(v), len(res.Deleted)-1)
	}
	return nil
}
