package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"vers/api"
)

type CheckoutOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	Format string
}

func NewCmdCheckout(f *Factory, runF func(context.Context, *CheckoutOptions) error) *cobra.Command {
	opts := &CheckoutOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "checkout [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Point HEAD at VM; with no VM, print HEAD",
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, err := vmArg(args)
			if err != nil {
				return err
			}
			opts.VM = vm
			return dispatch(cmd, opts.Format, opts, runF, runCheckout)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (the VM HEAD names)")
	return cmd
}

func runCheckout(ctx context.Context, o *CheckoutOptions) error {
	p, err := o.f.Project()
	if err != nil {
		return err
	}
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	if o.VM == "" {
		head, err := p.Head()
		if err != nil {
			return err
		}
		if head == "" {
			if o.Format == "json" {
				return json.NewEncoder(o.f.Out).Encode(api.Checkout{})
			}
			fmt.Fprintln(o.f.Out, "HEAD is not set; `vers checkout VM` sets it.")
			return nil
		}
		v, err := c.GetVM(ctx, head)
		if err != nil {
			return headGone(head, true, err)
		}
		if o.Format == "json" {
			return json.NewEncoder(o.f.Out).Encode(api.Checkout{Head: &v})
		}
		fmt.Fprintf(o.f.Out, "HEAD -> %s (%s, %s)\n", label(v), v.ID, v.State)
		return nil
	}
	v, err := c.GetVM(ctx, o.VM)
	if err != nil {
		return err
	}
	if err := o.f.moveHead(ctx, c, p, v.ID); err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(api.Checkout{Head: &v})
	}
	fmt.Fprintf(o.f.Out, "HEAD -> %s (%s)\n", label(v), v.ID)
	return nil
}
