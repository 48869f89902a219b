package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
)

type CommitRmOptions struct {
	f       *Factory
	Client  clientFunc
	Commits []string
	Format  string
}

func NewCmdCommitRm(f *Factory, runF func(context.Context, *CommitRmOptions) error) *cobra.Command {
	opts := &CommitRmOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "rm COMMIT...",
		ValidArgsFunction: completeArgs(f, true, commitArgs),
		Short:             "Remove commits: all those named, or none when one cannot go",
		Long: `Remove the commits named (tags, ids or id prefixes): all of them, or none
when one cannot go. A commit a VM needs (a sleeping VM needs its commit)
cannot be removed. The disk space they alone used is freed.`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "") {
				return errNoCommit
			}
			opts.Commits = args
			return dispatch(cmd, opts.Format, opts, runF, runCommitRm)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runCommitRm(ctx context.Context, o *CommitRmOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	removed, err := c.RemoveCommits(ctx, o.Commits)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(api.RemoveCommitsResponse{Removed: orNone(removed)})
	}
	for _, id := range removed {
		fmt.Fprintf(o.f.Out, "Removed commit %s\n", shortCommit(id))
	}
	return nil
}

func orNone(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

type CommitGCOptions struct {
	f         *Factory
	Client    clientFunc
	KeepLast  int
	OlderThan time.Duration
	DryRun    bool
	Format    string
}

func NewCmdCommitGC(f *Factory, runF func(context.Context, *CommitGCOptions) error) *cobra.Command {
	opts := &CommitGCOptions{f: f, Client: f.Client}
	var olderThan string
	cmd := &cobra.Command{
		Use:   "gc [--keep-last N] [--older-than DURATION] [--dry-run]",
		Short: "Remove old commits and free the disk space nothing uses",
		Long: `Free the disk space no commit uses any more, and remove old commits:
--keep-last N keeps the newest N commits of each VM and removes the others;
--older-than removes only commits older than that (7d, 36h, 90m, 1d12h).
Without either no commit is removed. A commit a VM needs is kept.
--dry-run says what would go, removing nothing.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.KeepLast < 0 {
				return fmt.Errorf("--keep-last %d: give 0 or more: %w", opts.KeepLast, errUsage)
			}
			if olderThan != "" {
				d, err := parseAge(olderThan)
				if err != nil {
					return fmt.Errorf("--older-than: %w", err)
				}
				if d < time.Second {
					return fmt.Errorf("--older-than %s: give at least 1s: %w", olderThan, errUsage)
				}
				opts.OlderThan = d
			}
			return dispatch(cmd, opts.Format, opts, runF, runCommitGC)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.KeepLast, "keep-last", 0, "keep the newest N commits of each VM, remove older ones")
	fl.StringVar(&olderThan, "older-than", "", "remove only commits older than this (7d, 36h, 90m)")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "say what would be removed, remove nothing")
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runCommitGC(ctx context.Context, o *CommitGCOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	res, err := c.GCCommits(ctx, api.GCRequest{
		KeepLast: o.KeepLast, OlderThanSeconds: int64(o.OlderThan / time.Second), DryRun: o.DryRun,
	})
	if err != nil {
		return err
	}
	if o.Format == "json" {
		res.Removed = orNone(res.Removed)
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	verb, freed := "Removed", "freed"
	if o.DryRun {
		verb, freed = "Would remove", "would free"
	}
	for _, id := range res.Removed {
		fmt.Fprintf(o.f.Out, "%s commit %s\n", verb, shortCommit(id))
	}
	fmt.Fprintf(o.f.Out, "%s %d commit(s); %s %s in %d chunk(s).\n", verb, len(res.Removed), freed, formatBytes(res.FreedBytes), res.FreedChunk)
	return nil
}
