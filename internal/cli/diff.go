package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aymanbagabas/go-udiff"
	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/fanout"
)

// DiffOptions: `vers diff A B [PATH...]` and `vers diff A B --exec CMD`.
type DiffOptions struct {
	f      *Factory
	Client clientFunc
	A, B   string
	// The filesystem comparison (diff_fs.go).
	Paths            []string
	Include, Exclude []string
	Stat, Checksum   bool
	Content          bool
	ContentMax       int64
	// The comparison of a command's outputs.
	Exec string
	fanFlags
	Format string
}

func NewCmdDiff(f *Factory, runF func(context.Context, *DiffOptions) error) *cobra.Command {
	opts := &DiffOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               `diff A B [PATH...] | diff A B --exec "CMD"`,
		ValidArgsFunction: completeArgs(f, false, vmArgs, vmArgs),
		Short:             "Show what differs between two VMs' filesystems, or a command's outputs",
		Long: `Without --exec: what differs between the filesystems of the running VMs A
and B under PATH (default /), leaving out /proc, /sys, /dev, /run and /tmp
(--include takes one back, --exclude leaves out more). One line per path:
A added (in B only), D deleted (in A only), M modified, then what differs
(content, mode, owner, type, symlink target). Symbolic links are compared
as links, never followed. A file whose inode, size, mtime and ctime are
the same on both sides is the same file (its content is not read);
--checksum hashes every file instead. --stat prints the counts only;
--content adds a unified diff of each changed text file (up to
--content-max bytes of each; binary files are named).

With --exec: run CMD with bash -c in A and B at once and print a unified
diff of their stdout (--- A, +++ B), then of their stderr and their exit
codes where those differ:

  vers diff migration-premium migration-inventory --exec "sqlite3 /app/db/ecommerce.db .schema"

Exit code: 0 when there is no difference, 1 when there is, as diff does;
vers's own codes (3 no such VM, 4 a VM that is not running, ...) when the
comparison could not be made.`,
		Args: usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.A, opts.B, opts.Paths = args[0], args[1], args[2:]
			if err := opts.check(); err != nil {
				return err
			}
			return dispatch(cmd, opts.Format, opts, runF, runDiff)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Exec, "exec", "", "compare this command's outputs in both VMs instead of their filesystems")
	fl.StringArrayVar(&opts.Include, "include", nil, "compare this path even if it is left out by default (repeatable)")
	fl.StringArrayVar(&opts.Exclude, "exclude", nil, "leave this path out (repeatable)")
	fl.BoolVar(&opts.Stat, "stat", false, "print only the counts of added, removed and changed paths")
	fl.BoolVar(&opts.Checksum, "checksum", false, "hash every file instead of trusting unchanged metadata (reads everything)")
	fl.BoolVar(&opts.Content, "content", false, "add a unified diff of each changed text file")
	fl.Int64Var(&opts.ContentMax, "content-max", 256<<10, "bytes of each file --content compares")
	opts.fanFlags.bind(fl)
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func (o *DiffOptions) check() error {
	switch {
	case o.A == "" || o.B == "":
		return fmt.Errorf("a VM is empty: give two aliases or ids: %w", errUsage)
	case o.Exec != "" && (len(o.Paths) > 0 || len(o.Include) > 0 || len(o.Exclude) > 0 || o.Stat || o.Checksum || o.Content):
		return fmt.Errorf("--exec compares a command's outputs; paths, --include, --exclude, --stat, --checksum and --content are for comparing filesystems: %w", errUsage)
	case o.ContentMax <= 0:
		return fmt.Errorf("--content-max must be positive: %w", errUsage)
	}
	if err := o.fanFlags.check(); err != nil {
		return err
	}
	return nil
}

func runDiff(ctx context.Context, o *DiffOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	if o.Exec == "" {
		return o.runFS(ctx, c)
	}
	vms, err := fanSpec{fanout.Spec{On: []string{o.A, o.B}}}.targets(ctx, c)
	if err != nil {
		return err
	}
	if len(vms) == 1 {
		return fmt.Errorf("%s and %s are the same VM (%s); name two: %w", o.A, o.B, vms[0].ID, errUsage)
	}
	res := o.fanFlags.run(o.Exec).run(ctx, c, vms)
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	a, b := res.Results[0], res.Results[1]
	for _, r := range []api.FanoutRow{a, b} {
		if r.Error != nil {
			return fmt.Errorf("in %s: %s: %w", refLabel(r.VM), r.Error.Message, codeError(r.Error.Code))
		}
	}
	d := execDiff(o.Exec, a, b)
	if o.Format == "json" {
		err = json.NewEncoder(o.f.Out).Encode(d)
	} else {
		writeExecDiff(o.f.Out, d)
	}
	if err == nil && !d.Same {
		return &ExitErr{Code: ExitError}
	}
	return err
}

// execDiff compares two results of one command.
func execDiff(cmd string, a, b api.FanoutRow) api.ExecDiff {
	la, lb := refLabel(a.VM), refLabel(b.VM)
	d := api.ExecDiff{Command: cmd, A: a, B: b}
	d.StdoutDiff = udiff.Unified(la, lb, a.Stdout, b.Stdout)
	d.StderrDiff = udiff.Unified(la+" (stderr)", lb+" (stderr)", a.Stderr, b.Stderr)
	d.Same = d.StdoutDiff == "" && d.StderrDiff == "" && a.ExitCode == b.ExitCode && a.TimedOut == b.TimedOut
	return d
}

func writeExecDiff(w io.Writer, d api.ExecDiff) {
	if d.Same {
		fmt.Fprintf(w, "%s and %s print the same (exit %s)\n", refLabel(d.A.VM), refLabel(d.B.VM), exitText(d.A))
		return
	}
	io.WriteString(w, d.StdoutDiff)
	io.WriteString(w, d.StderrDiff)
	if d.A.ExitCode != d.B.ExitCode || d.A.TimedOut != d.B.TimedOut {
		fmt.Fprintf(w, "exit code: %s %s, %s %s\n", refLabel(d.A.VM), exitText(d.A), refLabel(d.B.VM), exitText(d.B))
	}
	for _, r := range []api.FanoutRow{d.A, d.B} {
		if r.DroppedBytes > 0 {
			fmt.Fprintf(w, "(%s: %d more bytes of output were not kept; --max-output raises the cap)\n", refLabel(r.VM), r.DroppedBytes)
		}
	}
}

// codeError is the error kind an API error code names, so that a failure
// reported in a row exits as it would have on its own.
func codeError(code string) error {
	if code == api.CodeCancelled {
		return errCancelled
	}
	if k := errdefs.FromCode(code); k != nil {
		return k
	}
	return errors.New(code)
}
