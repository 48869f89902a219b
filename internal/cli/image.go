package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vers/api"
)

func NewCmdImage(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build and list kernel and root filesystem images",
	}
	cmd.AddCommand(NewCmdImageBuild(f, nil), NewCmdImageLs(f, nil))
	return cmd
}

type ImageBuildOptions struct {
	f      *Factory
	Client clientFunc
	Names  []string // none: every known image
	Force  bool
	Format string
}

func NewCmdImageBuild(f *Factory, runF func(context.Context, *ImageBuildOptions) error) *cobra.Command {
	opts := &ImageBuildOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "build [NAME...]",
		Short: "Build images (all known ones when none is named); cached ones are reused",
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Names = args
			return dispatch(cmd, opts.Format, opts, runF, runImageBuild)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "rebuild even if a current build exists")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (the images, no progress)")
	return cmd
}

// runImageBuild has versd build the images, showing their progress.
func runImageBuild(ctx context.Context, o *ImageBuildOptions) error {
	ctx, stop := withSignals(ctx)
	defer stop()
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	names := o.Names
	if len(names) == 0 {
		list, err := c.ListImages(ctx)
		if err != nil {
			return err
		}
		for _, img := range list {
			names = append(names, img.Name)
		}
	}
	built := []api.Image{}
	for _, name := range names {
		img, err := c.BuildImage(ctx, name, o.Force, progressOut(o.f, o.Format))
		if err != nil {
			return imageError(name, err)
		}
		built = append(built, img)
		if o.Format == "text" {
			fmt.Fprintf(o.f.Out, "%s: %s image ready (%d MiB)\n", img.Name, img.Kind, img.SizeMiB)
		}
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(built)
	}
	return nil
}

// ensureImages has versd build the images that are not built yet, showing
// their progress on errOut; built ones answer at once, silently.
func ensureImages(ctx context.Context, c Daemon, errOut io.Writer, names ...string) error {
	// Ctrl-C ends the wait cleanly, and versd then stops the build, instead
	// of killing vers in the middle of it.
	ctx, stop := withSignals(ctx)
	defer stop()
	for _, name := range names {
		if _, err := c.BuildImage(ctx, name, false, errOut); err != nil {
			return imageError(name, err)
		}
	}
	return nil
}

// imageError says what an interrupted build left. Other errors keep the kind
// versd gave them (an unknown image is invalid, a missing host tool
// unavailable).
func imageError(name string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("image %s: build interrupted; versd keeps nothing of it unless another client still waits for it: %w", name, errCancelled)
	}
	return err
}

type ImageLsOptions struct {
	f      *Factory
	Client clientFunc
	Format string
	Quiet  bool
}

func NewCmdImageLs(f *Factory, runF func(context.Context, *ImageLsOptions) error) *cobra.Command {
	opts := &ImageLsOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the known images and whether they are built",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dispatch(cmd, opts.Format, opts, runF, runImageLs)
		},
	}
	listFlags(cmd, &opts.Format, &opts.Quiet, "print only image names")
	return cmd
}

func runImageLs(ctx context.Context, o *ImageLsOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	list, err := c.ListImages(ctx)
	if err != nil {
		return err
	}
	switch {
	case o.Format == "json":
		if list == nil {
			list = []api.Image{}
		}
		return json.NewEncoder(o.f.Out).Encode(list)
	case o.Quiet:
		for _, img := range list {
			fmt.Fprintln(o.f.Out, img.Name)
		}
		return nil
	}
	tw := tabwriter.NewWriter(o.f.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSTATE\tSIZE\tBUILT")
	for _, img := range list {
		size, built := "-", "-"
		if img.Status != api.ImageMissing {
			size = fmt.Sprintf("%d MiB", img.SizeMiB)
			built = img.Built.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", img.Name, img.Kind, img.Status, size, built)
	}
	return tw.Flush()
}
