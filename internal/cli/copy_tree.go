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
	"time"

	"vers/api"
	"vers/internal/dirtar"
	"vers/internal/errdefs"
)

// vers cp -r: a directory travels as a tar archive (package dirtar),
// streamed from the walk to the extraction through pipes on every hop, so
// no side holds more than a chunk of it. The host side is built here: the
// walk of a host directory, which never follows a link in it, and the
// extraction of what a VM sends, confined under the destination (a guest
// is not trusted). A copy that fails part way keeps the whole files it
// wrote and no part of one; it is not undone, and a second copy over it
// replaces them.

// errWalkStopped ends the host walk when versd has answered before the
// archive's end (a full VM filesystem).
var errWalkStopped = errors.New("the VM stopped reading")

// copyTree runs vers cp -r once the sides are known.
func copyTree(ctx context.Context, o *CopyOptions, c Daemon, sremote bool, svm, spath, dvm, dpath string) error {
	start := time.Now()
	var res api.TreeResult
	var err error
	if sremote {
		res, err = copyTreeFromVM(ctx, o, c, svm, spath, dpath)
	} else {
		res, err = copyTreeToVM(ctx, o, c, spath, dvm, dpath)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; the files copied before stay, each one whole: %w", ctx.Err())
		}
		return err
	}
	out := api.CopyTreeResult{Src: o.Src, Dst: o.Dst, TreeResult: res, DurationMillis: time.Since(start).Milliseconds()}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(out)
	}
	fmt.Fprintln(o.f.Out, treeSummary(out, dvm, sremote))
	return nil
}

// treeSummary is the text line of a finished copy.
func treeSummary(r api.CopyTreeResult, vm string, toHost bool) string {
	where := r.Path
	if !toHost {
		where = vm + ":" + r.Path
	}
	secs := float64(r.DurationMillis) / 1000
	s := fmt.Sprintf("copied %s, %s, %s (%s) to %s in %.1fs", plural(r.Files, "file"), plural(r.Dirs, "directory"),
		plural(r.Symlinks, "symlink"), formatBytes(r.Bytes), where, secs)
	if secs > 0 {
		s += fmt.Sprintf(", %s/s", formatBytes(int64(float64(r.Bytes)/secs)))
	}
	if r.Skipped > 0 {
		s += fmt.Sprintf("\nskipped %s (named pipes, sockets and devices are not copied): %s",
			plural(r.Skipped, "entry"), strings.Join(r.SkippedNames, ", "))
		if r.Skipped > len(r.SkippedNames) {
			s += ", …"
		}
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	switch {
	case strings.HasSuffix(what, "y"):
		what = strings.TrimSuffix(what, "y") + "ie"
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// treeName is the name a copy of src gets inside an existing directory;
// "" for a source such as "." or "/", whose content is merged into it.
func treeName(src string) string {
	name := baseName(src)
	if name == "." || name == ".." {
		return ""
	}
	return name
}

// copyTreeToVM walks the host directory src into an archive that versd
// extracts in the VM as it arrives.
func copyTreeToVM(ctx context.Context, o *CopyOptions, c Daemon, src, vm, dst string) (api.TreeResult, error) {
	ref, err := o.f.headRef(vm)
	if err != nil {
		return api.TreeResult{}, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return api.TreeResult{}, fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	}
	if !fi.IsDir() {
		return api.TreeResult{}, fmt.Errorf("%s is not a directory; copy a file without -r: %w", src, errdefs.ErrInvalid)
	}
	pr, pw := io.Pipe()
	walked := make(chan error, 1)
	go func() {
		_, err := dirtar.Write(ctx, pw, src)
		pw.CloseWithError(err)
		walked <- err
	}()
	res, err := c.WriteTree(ctx, ref, dst, treeName(src), pr)
	pr.CloseWithError(errWalkStopped)
	// The walk's own failure (a file unreadable on the host) is why the
	// archive was cut: it beats what versd said of the cut.
	if werr := <-walked; werr != nil && !errors.Is(werr, errWalkStopped) && ctx.Err() == nil {
		return res, fmt.Errorf("read %s: %w", src, hostErr(werr))
	}
	return res, err
}

// copyTreeFromVM extracts the archive of a VM's directory into the host
// directory dst, or into dst/basename(src) when dst is a directory.
func copyTreeFromVM(ctx context.Context, o *CopyOptions, c Daemon, vm, src, dst string) (api.TreeResult, error) {
	ref, err := o.f.headRef(vm)
	if err != nil {
		return api.TreeResult{}, err
	}
	target := dst
	switch fi, err := os.Stat(dst); {
	case err == nil && fi.IsDir():
		target = filepath.Join(dst, treeName(src))
	case err == nil:
		return api.TreeResult{}, fmt.Errorf("%s is a file; give a directory to copy into, or a new name: %w", dst, errdefs.ErrInvalid)
	}
	rc, err := c.ReadTree(ctx, ref, src)
	if err != nil {
		return api.TreeResult{}, err
	}
	defer rc.Close()
	st, err := dirtar.Extract(ctx, rc, target, dirtar.Options{})
	res := api.TreeResult{Path: target, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks, Bytes: st.Bytes,
		Skipped: st.Skipped, SkippedNames: st.SkippedNames}
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, dirtar.ErrUnsafe):
		return res, fmt.Errorf("the VM sent %v; refused, nothing was written outside %s: %w", err, target, errdefs.ErrInvalid)
	}
	return res, hostErr(err)
}
