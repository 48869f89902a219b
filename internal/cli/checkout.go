package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/project"
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
		v, err := headVM(ctx, p, c)
		if err != nil {
			return err
		}
		if o.Format == "json" {
			return json.NewEncoder(o.f.Out).Encode(api.Checkout{Head: v})
		}
		if v == nil {
			fmt.Fprintln(o.f.Out, "HEAD is not set; `vers checkout VM` sets it.")
			return nil
		}
		fmt.Fprintf(o.f.Out, "HEAD -> %s (%s, %s)\n", label(*v), v.ID, v.State)
		return nil
	}
	v, err := checkoutVM(ctx, p, c, o.VM)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(api.Checkout{Head: &v})
	}
	fmt.Fprintf(o.f.Out, "HEAD -> %s (%s)\n", label(v), v.ID)
	return nil
}

// headVM is the VM HEAD of p names, or nil when HEAD is not set.
func headVM(ctx context.Context, p *project.Project, c Daemon) (*api.VM, error) {
	head, err := p.Head()
	if err != nil || head == "" {
		return nil, err
	}
	v, err := c.GetVM(ctx, head)
	if err != nil {
		return nil, headGone(head, true, err)
	}
	return &v, nil
}

// checkoutVM points HEAD of p at vm.
func checkoutVM(ctx context.Context, p *project.Project, c Daemon, vm string) (api.VM, error) {
	v, err := c.GetVM(ctx, vm)
	if err != nil {
		return v, err
	}
	return v, moveHead(ctx, c, p, v.ID)
}
