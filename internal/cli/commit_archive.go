package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

type CommitExportOptions struct {
	f      *Factory
	Client clientFunc
	Commit string
	// Output is the archive's file; "-" is standard output.
	Output string
	Format string
}

func NewCmdCommitExport(f *Factory, runF func(context.Context, *CommitExportOptions) error) *cobra.Command {
	opts := &CommitExportOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "export COMMIT -o FILE",
		ValidArgsFunction: completeArgs(f, false, commitArgs),
		Short:             "Write a commit as one archive file, to import on another host",
		Long: `Write COMMIT (a tag, an id or a unique id prefix) as one self-contained tar
archive, which ` + "`vers commit import`" + ` reads on this host or another. FILE is
replaced only once the whole archive has arrived: a failed or interrupted
export leaves no file. With -o - the archive goes to standard output, but
never to a terminal.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Commit = args[0]
			switch {
			case opts.Commit == "":
				return errNoCommit
			case opts.Output == "":
				return fmt.Errorf("say where the archive goes: -o FILE, or -o - for standard output: %w", errUsage)
			case opts.Output == "-" && opts.Format == "json":
				return fmt.Errorf("--format json prints on standard output, which -o - would write the archive to: name a file: %w", errUsage)
			}
			return dispatch(cmd, opts.Format, opts, runF, runCommitExport)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "the archive's file (- for standard output)")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (what was written)")
	return cmd
}

func runCommitExport(ctx context.Context, o *CommitExportOptions) error {
	if o.Output == "-" && o.f.StdoutIsTerminal() {
		return fmt.Errorf("standard output is a terminal: redirect it to a file, or use -o FILE: %w", errUsage)
	}
	if st, err := os.Stat(o.Output); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: name the archive's file: %w", o.Output, errdefs.ErrInvalid)
	}
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	var n countWriter
	export := func(w io.Writer) error {
		n.w = w
		return c.ExportCommit(ctx, o.Commit, &n)
	}
	if o.Output == "-" {
		err = export(o.f.Out)
	} else {
		// A commit holds a VM's memory: the archive is its owner's only.
		err = writeAtomic(o.Output, 0o600, export)
	}
	if err != nil {
		return stopped(ctx, "export", err)
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(api.ExportResult{Commit: o.Commit, Output: o.Output, Bytes: n.n})
	}
	dst := o.Output
	if dst == "-" {
		dst = "standard output"
	}
	fmt.Fprintf(o.f.ErrOut, "Exported %s to %s (%s)\n", o.Commit, dst, formatBytes(n.n))
	return nil
}

// countWriter counts what goes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type CommitImportOptions struct {
	f      *Factory
	Client clientFunc
	// File is the archive; "-" is standard input.
	File   string
	Format string
}

func NewCmdCommitImport(f *Factory, runF func(context.Context, *CommitImportOptions) error) *cobra.Command {
	opts := &CommitImportOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Read a commit from an archive that `vers commit export` wrote (- for standard input)",
		Long: `Read a commit from an archive that ` + "`vers commit export`" + ` wrote, on this host
or another, so that VMs can be started from it here. Only the parts this
host does not hold already are stored.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if opts.File == "" {
				return fmt.Errorf("the file is empty: name the archive, or - for standard input: %w", errUsage)
			}
			return dispatch(cmd, opts.Format, opts, runF, runCommitImport)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runCommitImport(ctx context.Context, o *CommitImportOptions) error {
	r := o.f.In
	if o.File == "-" {
		if o.f.StdinIsTerminal() {
			return fmt.Errorf("standard input is a terminal: pipe the archive in, or name its file: %w", errUsage)
		}
	} else {
		f, err := openArchive(o.File)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	res, err := c.ImportCommit(ctx, r)
	if err != nil {
		return stopped(ctx, "import", err)
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	fmt.Fprintf(o.f.Out, "Imported %s: %s logical, %s added in %d new chunk(s)\n",
		commitName(res.Commit), formatBytes(res.Commit.LogicalBytes), formatBytes(res.AddedBytes), res.NewChunks)
	return nil
}

// openArchive opens the archive file name; a missing one is not found.
func openArchive(name string) (*os.File, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is not an archive file: %w", name, errdefs.ErrInvalid)
	}
	return f, nil
}
