package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	out, err := copyTreeResult(ctx, o, c, sremote, svm, spath, dvm, dpath)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(out)
	}
	fmt.Fprintln(o.f.Out, treeSummary(out, dvm, sremote))
	return nil
}

// copyTreeResult is vers cp -r without its summary: the copy, with a
// progress line on a terminal in text mode.
func copyTreeResult(ctx context.Context, o *CopyOptions, c Daemon, sremote bool, svm, spath, dvm, dpath string) (api.CopyTreeResult, error) {
	start := time.Now()
	var moved atomic.Int64
	stopProgress := func() {}
	if o.Format == "text" && isTerminal(o.f.ErrOut) {
		stopProgress = showProgress(o.f.ErrOut, &moved, start, time.Second)
	}
	var res api.TreeResult
	var err error
	if sremote {
		res, err = copyTreeFromVM(ctx, o, c, svm, spath, dpath, &moved)
	} else {
		res, err = copyTreeToVM(ctx, o, c, spath, dvm, dpath, &moved)
	}
	stopProgress() // before anything else is printed on the terminal
	if err != nil {
		if ctx.Err() != nil {
			return api.CopyTreeResult{}, fmt.Errorf("interrupted; the files copied before stay, each one whole: %w", ctx.Err())
		}
		return api.CopyTreeResult{}, err
	}
	return api.CopyTreeResult{Src: o.Src, Dst: o.Dst, TreeResult: res, DurationMillis: time.Since(start).Milliseconds()}, nil
}

// showProgress writes, every interval, how much of the archive has gone
// by, on one line it redraws; stop clears it.
func showProgress(w io.Writer, moved *atomic.Int64, start time.Time, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
				fmt.Fprint(w, "\r\033[K"+progressLine(moved.Load(), time.Since(start)))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// progressLine says how much a copy has moved so far.
func progressLine(n int64, d time.Duration) string {
	s := "copying… " + formatBytes(n)
	if secs := d.Seconds(); secs >= 1 {
		s += fmt.Sprintf(" (%s/s)", formatBytes(int64(float64(n)/secs)))
	}
	return s
}

// countingReader adds what is read through it to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
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
	if stem, ok := strings.CutSuffix(what, "y"); ok {
		return fmt.Sprintf("%d %sies", n, stem)
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
func copyTreeToVM(ctx context.Context, o *CopyOptions, c Daemon, src, vm, dst string, moved *atomic.Int64) (api.TreeResult, error) {
	ref, err := o.f.headRef(vm)
	if err != nil {
		return api.TreeResult{}, err
	}
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return api.TreeResult{}, fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	}
	if err != nil {
		return api.TreeResult{}, err
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
	res, err := c.WriteTree(ctx, ref, dst, treeName(src), countingReader{r: pr, n: moved})
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
func copyTreeFromVM(ctx context.Context, o *CopyOptions, c Daemon, vm, src, dst string, moved *atomic.Int64) (api.TreeResult, error) {
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
	st, err := dirtar.Extract(ctx, countingReader{r: rc, n: moved}, target, dirtar.Options{})
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
