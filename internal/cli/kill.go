package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"vers/api"
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
	v, res, err := killVM(ctx, o.f, c, o.VM, o.Recursive)
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

// killVM is `vers kill` without its printing: it kills vm (with its
// descendants if recursive) and clears a HEAD that named a VM it killed.
func killVM(ctx context.Context, f *Factory, c Daemon, vm string, recursive bool) (api.VM, api.DeleteVMResponse, error) {
	v, err := c.GetVM(ctx, vm)
	if err != nil {
		return v, api.DeleteVMResponse{}, err
	}
	res, err := c.DeleteVM(ctx, v.ID, recursive)
	// A HEAD that named a killed VM is cleared, so it cannot point at a
	// stranger: also when the kill of a tree failed part way.
	if p, perr := f.Project(); perr == nil {
		if head, _ := p.Head(); head != "" {
			for _, id := range res.Deleted {
				if id == head {
					moveHead(ctx, c, p, "")
				}
			}
		}
	}
	return v, res, err
}
