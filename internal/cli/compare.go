package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// CompareOptions: `vers compare --exec CMD VM...` (or --tree/--children).
type CompareOptions struct {
	f      *Factory
	Client clientFunc
	Exec   string
	Fan    fanSpec
	fanFlags
	Format string
}

func NewCmdCompare(f *Factory, runF func(context.Context, *CompareOptions) error) *cobra.Command {
	opts := &CompareOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               `compare --exec "CMD" (VM VM... | --tree VM | --children VM)`,
		ValidArgsFunction: completeArgs(f, true, vmArgs),
		Short:             "Run one command in several VMs at once and group them by identical result",
		Long: `Run CMD with bash -c in every VM named (or in VM and its descendants with
--tree, in its children with --children), all at once, and print the VMs
grouped by identical result — the same exit code, stdout and stderr — the
largest group first, each group's output once:

  vers compare --exec "sqlite3 /app/db/ecommerce.db .tables" --tree db-root

Exit code: 0 when every VM gave the same result, 1 when they differ. A VM
that cannot run the command (dead, paused, its agent gone) is a group of its
own saying why. --format json prints every field of every VM.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Fan.On = append(opts.Fan.On, args...)
			if err := opts.check(); err != nil {
				return err
			}
			return dispatch(cmd, opts.Format, opts, runF, runCompare)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Exec, "exec", "", "the command to run in each VM (required)")
	fl.StringVar(&opts.Fan.Tree, "tree", "", "VM and all its descendants")
	fl.StringVar(&opts.Fan.Children, "children", "", "VM's children")
	opts.fanFlags.bind(fl)
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func (o *CompareOptions) check() error {
	switch {
	case o.Exec == "":
		return fmt.Errorf(`give the command with --exec "CMD": %w`, errUsage)
	case !o.Fan.set():
		return fmt.Errorf("name the VMs to compare, or give --tree VM or --children VM: %w", errUsage)
	}
	if err := o.fanFlags.check(); err != nil {
		return err
	}
	return o.Fan.check()
}

func runCompare(ctx context.Context, o *CompareOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	vms, err := o.Fan.targets(ctx, c)
	if err != nil {
		return err
	}
	res := o.fanFlags.run(o.Exec).run(ctx, c, vms)
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if o.Format == "json" {
		err = json.NewEncoder(o.f.Out).Encode(res)
	} else {
		writeComparison(o.f.Out, res)
	}
	if err == nil && len(res.Groups) > 1 {
		return &ExitErr{Code: ExitError}
	}
	return err
}
