package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"vers/internal/errdefs"
)

type CopyOptions struct {
	f        *Factory
	Src, Dst string
}

func NewCmdCopy(f *Factory, runF func(context.Context, *CopyOptions) error) *cobra.Command {
	opts := &CopyOptions{f: f}
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file between the host and a VM (VM:PATH, or :PATH for HEAD)",
		Long: `Copy one file. A path written VM:PATH is in that VM (":PATH" is in HEAD);
any other path is on the host. "-" as the host side is standard input/output.`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Src, opts.Dst = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runCopy(cmd.Context(), opts)
		},
	}
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
	svm, spath, sremote := splitRemote(o.Src)
	dvm, dpath, dremote := splitRemote(o.Dst)
	if sremote == dremote {
		return fmt.Errorf("exactly one side must be in a VM (VM:PATH): %w", errUsage)
	}
	if remote := o.Src; (sremote && spath == "") || (dremote && dpath == "") {
		if dremote {
			remote = o.Dst
		}
		return fmt.Errorf("%q names no file in the VM: write VM:/path/in/vm (or :/path/in/vm for HEAD), e.g. :/root/: %w", remote, errUsage)
	}
	c, err := o.f.Client(ctx)
	if err != nil {
		return err
	}
	if sremote {
		ref, err := o.f.headRef(svm)
		if err != nil {
			return err
		}
		rc, mode, err := c.ReadFile(ctx, ref, spath)
		if err != nil {
			return err
		}
		defer rc.Close()
		if dpath == "-" {
			_, err = io.Copy(o.f.Out, rc)
			return err
		}
		if st, err := os.Stat(dpath); err == nil && st.IsDir() {
			dpath = dpath + "/" + baseName(spath)
		}
		f, err := os.OpenFile(dpath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o200)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, rc); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	ref, err := o.f.headRef(dvm)
	if err != nil {
		return err
	}
	var r io.Reader = o.f.In
	mode := os.FileMode(0o644)
	if spath != "-" {
		f, err := os.Open(spath)
		if err != nil {
			return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
		}
		defer f.Close()
		st, _ := f.Stat()
		if st.IsDir() {
			return fmt.Errorf("%s is a directory; cp copies one file: %w", spath, errdefs.ErrInvalid)
		}
		mode = st.Mode().Perm()
		r = f
		if strings.HasSuffix(dpath, "/") {
			dpath += baseName(spath)
		}
	}
	return c.WriteFile(ctx, ref, dpath, mode, r)
}

func baseName(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
