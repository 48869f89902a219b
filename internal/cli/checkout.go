package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type CheckoutOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
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
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runCheckout(cmd.Context(), opts)
		},
	}
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
			fmt.Fprintln(o.f.Out, "HEAD is not set; `vers checkout VM` sets it.")
			return nil
		}
		v, err := c.GetVM(ctx, head)
		if err != nil {
			return headGone(head, true, err)
		}
		fmt.Fprintf(o.f.Out, "HEAD -> %s (%s, %s)\n", label(v), v.ID, v.State)
		return nil
	}
	v, err := c.GetVM(ctx, o.VM)
	if err != nil {
		return err
	}
	if err := p.SetHead(v.ID); err != nil {
		return err
	}
	fmt.Fprintf(o.f.Out, "HEAD -> %s (%s)\n", label(v), v.ID)
	return nil
}
