package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

type CopyOptions struct {
	f         *Factory
	Src, Dst  string
	Recursive bool
	Format    string
}

func NewCmdCopy(f *Factory, runF func(context.Context, *CopyOptions) error) *cobra.Command {
	opts := &CopyOptions{f: f}
	cmd := &cobra.Command{
		Use:               "cp [-r] SRC DST",
		ValidArgsFunction: completeCopy(f),
		Short:             "Copy a file or, with -r, a directory between the host and a VM (VM:PATH, or :PATH for HEAD)",
		Long: `Copy one file, or with -r a directory. A path written VM:PATH is in that VM
(":PATH" is in HEAD); any other path is on the host. "-" as the host side is
standard input/output (files only). A file is copied whole or not at all:
the destination is replaced only once all of it has arrived. Without -r,
directories, named pipes and devices in the VM are refused.

With -r, SRC is a directory. If DST is an existing directory the copy is
DST/basename(SRC), otherwise DST is created (with its parents) as the copy.
A DST/basename(SRC) that exists already is merged into: its files and links
of the same names are replaced, the others stay. Regular files, directories
and symbolic links are copied with their permissions and modification
times; links stay links, their target as it was, never followed (on either
side, a link pointing out of the tree is copied as a link and what it
points to is not). Owners are not kept: the copy belongs to whoever makes
it, and on the host files lose set-user-ID and set-group-ID bits. Named
pipes, sockets and devices are skipped and listed; hard links become
separate files. What comes from the VM is written only under DST: an entry
that would reach outside it (an absolute name, "..", a path through a
link) is refused. The copy streams, and ends with a summary (--format
json: CopyTreeResult). A copy that fails part way keeps the files it had
written, each one whole; copying again completes it.

Exit code 8 means a filesystem (the VM's or the host's) is full, 7 that a
signal interrupted the copy.`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Src, opts.Dst = args[0], args[1]
			return dispatch(cmd, opts.Format, opts, runF, runCopy)
		},
	}
	cmd.Flags().BoolVarP(&opts.Recursive, "recursive", "r", false, "copy a directory and everything in it")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (what was copied)")
	return cmd
}

// splitRemote parses VM:PATH. ok is false for a host path.
func splitRemote(s string) (vm, path string, ok bool) {
	i := strings.Index(s, ":")
	if i < 0 || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

func runCopy(ctx context.Context, o *CopyOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	// A signal ends the transfer cleanly: no half file is left on either side.
	ctx, stop := withSignals(ctx)
	defer stop()
	c, err := o.f.Client(ctx)
	if err != nil {
		return err
	}
	if o.Recursive {
		svm, spath, sremote := splitRemote(o.Src)
		dvm, dpath, _ := splitRemote(o.Dst)
		return copyTree(ctx, o, c, sremote, svm, spath, dvm, dpath)
	}
	n, err := copyFile(ctx, o, c)
	if err != nil || o.Format != "json" {
		return err
	}
	return json.NewEncoder(o.f.Out).Encode(api.CopyResult{Src: o.Src, Dst: o.Dst, Bytes: n})
}

// check refuses a copy that names no VM side, two, or no file in the VM.
func (o *CopyOptions) check() error {
	_, spath, sremote := splitRemote(o.Src)
	_, dpath, dremote := splitRemote(o.Dst)
	if sremote == dremote {
		return fmt.Errorf("exactly one side must be in a VM (VM:PATH): %w", errUsage)
	}
	if remote := o.Src; (sremote && spath == "") || (dremote && dpath == "") {
		if dremote {
			remote = o.Dst
		}
		return fmt.Errorf("%q names no file in the VM: write VM:/path/in/vm (or :/path/in/vm for HEAD), e.g. :/root/: %w", remote, errUsage)
	}
	if o.Recursive && (spath == "-" || dpath == "-") {
		return fmt.Errorf("-r copies a directory; standard input or output (-) carries one file: %w", errUsage)
	}
	if o.Format == "json" && sremote && dpath == "-" {
		return fmt.Errorf("--format json prints on standard output, which - would write the file to: name a host file: %w", errUsage)
	}
	return nil
}

// copyFile is `vers cp` without its printing: it copies o.Src to o.Dst,
// which check has accepted, and returns the bytes copied.
func copyFile(ctx context.Context, o *CopyOptions, c Daemon) (int64, error) {
	svm, spath, sremote := splitRemote(o.Src)
	dvm, dpath, _ := splitRemote(o.Dst)
	if sremote {
		return copyFromVM(ctx, o, c, svm, spath, dpath)
	}
	return copyToVM(ctx, o, c, spath, dvm, dpath)
}

func copyFromVM(ctx context.Context, o *CopyOptions, c Daemon, vm, src, dst string) (int64, error) {
	ref, err := o.f.headRef(vm)
	if err != nil {
		return 0, err
	}
	rc, mode, err := c.ReadFile(ctx, ref, src)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	r := &countReader{r: rc}
	if dst == "-" {
		_, err = io.Copy(o.f.Out, r)
		return r.n, interrupted(ctx, err)
	}
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		dst = filepath.Join(dst, baseName(src))
	}
	return r.n, interrupted(ctx, download(dst, mode, r))
}

// countReader counts what is read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func copyToVM(ctx context.Context, o *CopyOptions, c Daemon, src, vm, dst string) (int64, error) {
	ref, err := o.f.headRef(vm)
	if err != nil {
		return 0, err
	}
	var r io.Reader = o.f.In
	mode := os.FileMode(0o644)
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return 0, fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if st.IsDir() {
			return 0, fmt.Errorf("%s is a directory; copy it with vers cp -r: %w", src, errdefs.ErrInvalid)
		}
		mode = st.Mode().Perm()
		r = f
		if strings.HasSuffix(dst, "/") {
			dst += baseName(src)
		}
	}
	cr := &countReader{r: r}
	err = interrupted(ctx, c.WriteFile(ctx, ref, dst, mode, cr))
	return cr.n, err
}

// interrupted says so when a signal ended the copy.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted; nothing was replaced: %w", ctx.Err())
	}
	return err
}

// download writes r to dst as writeAtomic does.
func download(dst string, mode os.FileMode, r io.Reader) error {
	return writeAtomic(dst, mode, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// writeAtomic has fill write dst through a temporary file in dst's
// directory, made durable and renamed over dst only once fill has returned
// nil: a failed or interrupted write leaves dst as it was, and no temporary
// file. An existing dst keeps its permissions; a new one gets mode, less
// the umask.
func writeAtomic(dst string, mode os.FileMode, fill func(io.Writer) error) (err error) {
	if real, err := filepath.EvalSymlinks(dst); err == nil {
		dst = real // replace what a link points to, as cp does, not the link
	}
	if st, err := os.Stat(dst); err == nil {
		mode = st.Mode().Perm()
	} else {
		mode = (mode | 0o200) &^ umask()
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".vers-*")
	if err != nil {
		return hostErr(err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return hostErr(err)
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return hostErr(err)
	}
	if err := f.Close(); err != nil {
		return hostErr(err)
	}
	return os.Rename(f.Name(), dst)
}

// hostErr classifies a full host filesystem.
func hostErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%v; the host's filesystem is full: %w", err, errdefs.ErrNoSpace)
	}
	return err
}

// umask is the process's file mode creation mask.
func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}

func baseName(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
