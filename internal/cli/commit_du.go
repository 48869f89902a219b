package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
)

type CommitDuOptions struct {
	f      *Factory
	Client clientFunc
	Format string
}

func NewCmdCommitDu(f *Factory, runF func(context.Context, *CommitDuOptions) error) *cobra.Command {
	opts := &CommitDuOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "du",
		Short: "Show the disk space commits take: their size, and what they share",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dispatch(cmd, opts.Format, opts, runF, runCommitDu)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runCommitDu(ctx context.Context, o *CommitDuOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	u, err := c.CommitUsage(ctx)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		if u.PerCommit == nil {
			u.PerCommit = []api.Commit{}
		}
		return json.NewEncoder(o.f.Out).Encode(u)
	}
	fmt.Fprintln(o.f.Out, usageLine(u))
	if len(u.PerCommit) == 0 {
		return nil
	}
	fmt.Fprintln(o.f.Out)
	return commitTable(o.f.Out, u.PerCommit, time.Now())
}

// usageLine sums up what commits take: "3 commits: 3.6 GiB logical, 412 MiB
// on disk (9.0x smaller), 1234 chunks".
func usageLine(u api.Usage) string {
	ratio := ""
	if u.StoredBytes > 0 && u.LogicalBytes > 0 {
		ratio = fmt.Sprintf(" (%.1fx smaller)", float64(u.LogicalBytes)/float64(u.StoredBytes))
	}
	return fmt.Sprintf("%d commit(s): %s logical, %s on disk%s, %d chunk(s)",
		u.Commits, formatBytes(u.LogicalBytes), formatBytes(u.StoredBytes), ratio, u.Chunks)
}
