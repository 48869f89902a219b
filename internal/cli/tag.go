package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

func NewCmdTag(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tag",
		Short: "Name commits, to run, branch or restore them by name",
		Long: `A tag is a name for a commit (db-ready, before-migration), usable wherever a
commit is: ` + "`vers run-commit db-ready`" + `, ` + "`vers branch db-ready --count 3`" + `,
` + "`vers restore db-ready`" + `. Removing a tag keeps its commit.`,
	}
	cmd.AddCommand(NewCmdTagLs(f, nil), NewCmdTagSet(f, false, nil), NewCmdTagSet(f, true, nil), NewCmdTagRm(f, nil))
	return cmd
}

type TagLsOptions struct {
	f      *Factory
	Client clientFunc
	Format string
	Quiet  bool
}

func NewCmdTagLs(f *Factory, runF func(context.Context, *TagLsOptions) error) *cobra.Command {
	opts := &TagLsOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the tags and the commits they name",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dispatch(cmd, opts.Format, opts, runF, runTagLs)
		},
	}
	listFlags(cmd, &opts.Format, &opts.Quiet, "print only tag names")
	return cmd
}

func runTagLs(ctx context.Context, o *TagLsOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	tags, err := c.ListTags(ctx)
	if err != nil {
		return err
	}
	switch {
	case o.Format == "json":
		if tags == nil {
			tags = []api.Tag{}
		}
		return json.NewEncoder(o.f.Out).Encode(tags)
	case o.Quiet:
		for _, t := range tags {
			fmt.Fprintln(o.f.Out, t.Name)
		}
		return nil
	case len(tags) == 0:
		fmt.Fprintln(o.f.Out, "No tags. `vers tag create NAME COMMIT` or `vers commit --tag NAME` makes one.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(o.f.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOMMIT\tCREATED")
	for _, t := range tags {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, shortCommit(t.Commit), formatAge(now, t.CreatedAt))
	}
	return tw.Flush()
}

// TagSetOptions are those of `vers tag create` and `vers tag mv`.
type TagSetOptions struct {
	f      *Factory
	Client clientFunc
	Name   string
	Commit string
	// Move replaces an existing tag (mv); without it one is a conflict.
	Move   bool
	Format string
}

// NewCmdTagSet is `vers tag create`, or `vers tag mv` with move.
func NewCmdTagSet(f *Factory, move bool, runF func(context.Context, *TagSetOptions) error) *cobra.Command {
	opts := &TagSetOptions{f: f, Client: f.Client, Move: move}
	cmd := &cobra.Command{
		Use:               "create NAME COMMIT",
		ValidArgsFunction: completeArgs(f, false, nil, commitArgs),
		Short:             "Give COMMIT (an id, a unique id prefix or a tag) the name NAME",
		Args:              usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Commit = args[0], args[1]
			switch {
			case opts.Name == "":
				return fmt.Errorf("the tag's name is empty: %w", errUsage)
			case opts.Commit == "":
				return errNoCommit
			}
			return dispatch(cmd, opts.Format, opts, runF, runTagSet)
		},
	}
	if move {
		cmd.Use, cmd.Short = "mv NAME COMMIT", "Move tag NAME to COMMIT"
		cmd.ValidArgsFunction = completeArgs(f, false, tagArgs, commitArgs)
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runTagSet(ctx context.Context, o *TagSetOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	old := []api.Tag{{}}
	if o.Move {
		if old, err = findTag(ctx, c, o.Name); err != nil {
			return err
		}
	}
	t, err := c.SetTag(ctx, o.Name, api.TagRequest{Commit: o.Commit, Move: o.Move})
	if err != nil {
		return err
	}
	switch {
	case o.Format == "json":
		return json.NewEncoder(o.f.Out).Encode(t)
	case o.Move:
		fmt.Fprintf(o.f.Out, "Moved tag %s from %s to %s\n", t.Name, shortCommit(old[0].Commit), shortCommit(t.Commit))
	default:
		fmt.Fprintf(o.f.Out, "Tagged %s %s\n", shortCommit(t.Commit), t.Name)
	}
	return nil
}

// findTag is the tags names of those the daemon lists; a missing one is not
// found, with what to do.
func findTag(ctx context.Context, c Daemon, names ...string) ([]api.Tag, error) {
	tags, err := c.ListTags(ctx)
	if err != nil {
		return nil, err
	}
	var found []api.Tag
	for _, name := range names {
		i := slices.IndexFunc(tags, func(t api.Tag) bool { return t.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("no tag %q; `vers tag ls` lists them, `vers tag create` makes one: %w", name, errdefs.ErrNotFound)
		}
		found = append(found, tags[i])
	}
	return found, nil
}

type TagRmOptions struct {
	f      *Factory
	Client clientFunc
	Names  []string
	Format string
}

func NewCmdTagRm(f *Factory, runF func(context.Context, *TagRmOptions) error) *cobra.Command {
	opts := &TagRmOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "rm NAME...",
		ValidArgsFunction: completeArgs(f, true, tagArgs),
		Short:             "Remove tags (their commits stay)",
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "") {
				return fmt.Errorf("a tag's name is empty: %w", errUsage)
			}
			opts.Names = args
			return dispatch(cmd, opts.Format, opts, runF, runTagRm)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (the tags removed)")
	return cmd
}

// runTagRm checks that every tag exists before it removes any.
func runTagRm(ctx context.Context, o *TagRmOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	tags, err := findTag(ctx, c, o.Names...)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if err := c.RemoveTag(ctx, t.Name); err != nil {
			return err
		}
		if o.Format == "text" {
			fmt.Fprintf(o.f.Out, "Removed tag %s (was %s)\n", t.Name, shortCommit(t.Commit))
		}
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(api.RemoveTagsResult{Removed: tags})
	}
	return nil
}
