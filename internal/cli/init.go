package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"vers/internal/project"
)

type InitOptions struct {
	f   *Factory
	Dir string
}

func NewCmdInit(f *Factory, runF func(*InitOptions) error) *cobra.Command {
	opts := &InitOptions{f: f}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make the current directory a vers project (vers.toml and .vers/)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = f.WorkDir
			if runF != nil {
				return runF(opts)
			}
			return runInit(opts)
		},
	}
	return cmd
}

func runInit(o *InitOptions) error {
	wrote, err := project.Init(o.Dir)
	if err != nil {
		return err
	}
	path := filepath.Join(o.Dir, project.ConfigFile)
	if wrote {
		fmt.Fprintf(o.f.Out, "Initialized vers project in %s\nEdit %s to size the machine, then `vers run`.\n", o.Dir, project.ConfigFile)
	} else {
		fmt.Fprintf(o.f.Out, "%s already exists; left unchanged.\n", path)
	}
	return nil
}
