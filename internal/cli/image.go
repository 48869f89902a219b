package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vers/internal/errdefs"
	"vers/internal/image"
)

func NewCmdImage(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build and list kernel and root filesystem images",
	}
	cmd.AddCommand(newCmdImageBuild(f), newCmdImageLs(f))
	return cmd
}

func imageStore(f *Factory) *image.Store {
	st := image.New(f.Layout.ImageDir, f.Agent)
	st.UseMirror(f.Mirror)
	return st
}

func newCmdImageBuild(f *Factory) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "build [NAME...]",
		Short: "Build images (all known ones when none is named); cached ones are reused",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			st := imageStore(f)
			if len(args) == 0 {
				args = st.Names()
			}
			for _, name := range args {
				info, err := st.Build(ctx, name, force, f.ErrOut)
				if err != nil {
					return imageError(name, err)
				}
				fmt.Fprintf(f.Out, "%s: %s image ready (%d MiB)\n", info.Name, info.Kind, info.SizeMiB)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even if a current build exists")
	return cmd
}

func newCmdImageLs(f *Factory) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the known images and whether they are built",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			list, err := imageStore(f).List()
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(f.Out).Encode(list)
			}
			tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tSTATE\tSIZE\tBUILT")
			for _, s := range list {
				size, built := "-", "-"
				if s.State != image.StateMissing {
					size = fmt.Sprintf("%d MiB", s.Info.SizeMiB)
					built = s.Info.Built.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.State, size, built)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// imageError classifies image errors for exit codes.
func imageError(name string, err error) error {
	switch {
	case errors.Is(err, image.ErrUnknown):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	case errors.Is(err, image.ErrMissingTool):
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("image %s: build interrupted; nothing was kept: %w", name, errCancelled)
	}
	return err
}
