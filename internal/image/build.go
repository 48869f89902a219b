package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// recipe is how one image is made. spec is a canonical description of
// everything that determines the result except the agent binary; changing it
// changes the recipe hash and so makes existing builds stale.
type recipe struct {
	name  string
	kind  Kind
	spec  string
	steps []step
}

// step is one stage of a build; about is the typical duration shown to the
// user before it starts.
type step struct {
	title string
	about time.Duration
	run   func(ctx context.Context, b *build) error
}

// build is the state of one build in progress.
type build struct {
	s        *Store
	r        *recipe
	tmp      string // private scratch directory, removed at the end
	out      string // becomes the build directory
	logPath  string
	log      *os.File
	progress io.Writer
	meta     metadata
}

// Build builds name and makes it current. Without force it returns the
// existing build when that is current. Cancelling ctx stops the build and
// leaves the previous state intact.
func (s *Store) Build(ctx context.Context, name string, force bool, progress io.Writer) (Info, error) {
	if progress == nil {
		progress = io.Discard
	}
	r, err := s.recipe(name)
	if err != nil {
		return Info{}, err
	}
	agentSum, err := s.agentSHA256()
	if err != nil {
		return Info{}, err
	}
	for _, d := range []string{"builds", "cache", "tmp", "locks", "logs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return Info{}, fmt.Errorf("image dir: %w", err)
		}
	}
	unlock, err := s.lock(ctx, name, progress)
	if err != nil {
		return Info{}, err
	}
	defer unlock()

	// Another process may have finished the same build while we waited.
	if !force {
		if info, err := s.Get(name); err == nil {
			return info, nil
		}
	}
	if err := s.removeStale(name); err != nil {
		return Info{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), name+"-")
	if err != nil {
		return Info{}, fmt.Errorf("image build dir: %w", err)
	}
	defer removeTree(tmp)

	b := &build{s: s, r: r, tmp: tmp, out: filepath.Join(tmp, "out"), progress: progress}
	b.logPath = filepath.Join(s.dir, "logs", name+".log")
	if b.log, err = os.Create(b.logPath); err != nil {
		return Info{}, fmt.Errorf("build log: %w", err)
	}
	defer b.log.Close()
	if err := os.Mkdir(b.out, 0o755); err != nil {
		return Info{}, err
	}
	b.meta = metadata{
		Info:        Info{Name: name, Kind: r.kind, Recipe: recipeHash(r.spec, agentSum)},
		AgentSHA256: agentSum,
	}

	start := time.Now()
	b.say("building %s (log: %s)", name, b.logPath)
	for i, st := range r.steps {
		if err := ctx.Err(); err != nil {
			return Info{}, fmt.Errorf("build %s: %w", name, err)
		}
		t0 := time.Now()
		b.say("step %d/%d: %s (about %s)…", i+1, len(r.steps), st.title, roundDur(st.about))
		fmt.Fprintf(b.log, "=== step %d/%d: %s\n", i+1, len(r.steps), st.title)
		if err := st.run(ctx, b); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return Info{}, fmt.Errorf("build %s: %s: %w", name, st.title, err)
		}
		b.say("step %d/%d: done in %s", i+1, len(r.steps), roundDur(time.Since(t0)))
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("build %s: %w", name, err)
	}
	info, err := b.install()
	if err != nil {
		return Info{}, fmt.Errorf("build %s: %w", name, err)
	}
	b.say("built in %s: %s", roundDur(time.Since(start)), info.Path)
	return info, nil
}

func (b *build) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "[%s] %s\n", b.r.name, fmt.Sprintf(format, args...))
}

// install writes the metadata, moves the build into builds/ and points the
// name at it, each by an atomic rename.
func (b *build) install() (Info, error) {
	b.meta.Built = time.Now().UTC().Truncate(time.Second)
	data, err := json.MarshalIndent(b.meta, "", "  ")
	if err != nil {
		return Info{}, err
	}
	if err := writeFileSync(filepath.Join(b.out, infoFile), append(data, '\n'), 0o644); err != nil {
		return Info{}, err
	}
	if err := syncDir(b.out); err != nil {
		return Info{}, err
	}
	base := fmt.Sprintf("%s-%s-%s", b.r.name, b.meta.Recipe[:12], b.meta.Built.Format("20060102T150405Z"))
	final := filepath.Join(b.s.dir, "builds", base)
	for i := 1; ; i++ {
		if _, err := os.Lstat(final); errors.Is(err, os.ErrNotExist) {
			break
		}
		final = filepath.Join(b.s.dir, "builds", fmt.Sprintf("%s.%d", base, i))
	}
	if err := os.Rename(b.out, final); err != nil {
		return Info{}, fmt.Errorf("install build: %w", err)
	}
	link := filepath.Join(b.s.dir, b.r.name)
	tmpLink := filepath.Join(b.s.dir, "tmp", b.r.name+".link")
	os.Remove(tmpLink)
	if err := os.Symlink(filepath.Join("builds", filepath.Base(final)), tmpLink); err != nil {
		removeTree(final)
		return Info{}, fmt.Errorf("install build: %w", err)
	}
	// The link is made in tmp/ but must resolve relative to the image dir.
	if err := os.Rename(tmpLink, link); err != nil {
		os.Remove(tmpLink)
		removeTree(final)
		return Info{}, fmt.Errorf("install build: %w", err)
	}
	syncDir(b.s.dir)
	return b.s.current(b.r.name)
}

// lock takes the per-image build lock, waiting (and saying so) while another
// process holds it. The lock dies with the process, so a killed build never
// blocks the next one.
func (s *Store) lock(ctx context.Context, name string, progress io.Writer) (func(), error) {
	path := filepath.Join(s.dir, "locks", name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("build lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(progress, "[%s] waiting for another build of %s to finish…\n", name, name)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("build %s: waiting for lock: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// removeStale deletes what an interrupted build of name left in tmp/. The
// caller holds the lock, so nothing there is in use.
func (s *Store) removeStale(name string) error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, name+"-") && buildOfTmp(n) == name || n == name+".link" {
			if err := removeTree(filepath.Join(s.dir, "tmp", n)); err != nil {
				return fmt.Errorf("remove stale build %s: %w", n, err)
			}
		}
	}
	return nil
}

// buildOfTmp returns the image name of a temp dir "<name>-<random digits>".
func buildOfTmp(dir string) string {
	i := strings.LastIndex(dir, "-")
	if i < 0 {
		return ""
	}
	return dir[:i]
}

// removeTree deletes a build tree, first detaching anything still mounted
// inside it (an interrupted debootstrap leaves /proc and bind mounts behind),
// so the removal never reaches into the host's /proc, /sys or /dev.
func removeTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounts, err := mountsUnder(abs)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return os.RemoveAll(abs)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return parseMountsUnder(data, dir), nil
}

func parseMountsUnder(mountinfo []byte, dir string) []string {
	var out []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// Deeper mounts first; among equals, the later (top) mount first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sortStableByDepth(out)
	return out
}

func sortStableByDepth(p []string) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && strings.Count(p[j], "/") > strings.Count(p[j-1], "/"); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// unescapeMount decodes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// run executes a host command with its output in the build log. The command
// runs in its own process group so that cancelling kills its children too
// (debootstrap runs dpkg in a chroot). On failure the error names the log
// and quotes its last lines. onLine, if set, sees every output line.
func (b *build) run(ctx context.Context, onLine func(string), tool, pkg string, args ...string) error {
	return b.command(ctx, "", onLine, tool, pkg, args...)
}

// runIn is run in the working directory dir.
func (b *build) runIn(ctx context.Context, dir, tool, pkg string, args ...string) error {
	return b.command(ctx, dir, nil, tool, pkg, args...)
}

func (b *build) command(ctx context.Context, dir string, onLine func(string), tool, pkg string, args ...string) error {
	bin, err := lookTool(tool, pkg)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.log, "$ %s %s\n", tool, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = toolEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var w io.Writer = b.log
	var lw *lineWriter
	if onLine != nil {
		lw = &lineWriter{w: b.log, fn: onLine}
		w = lw
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	if lw != nil {
		lw.flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Sync()
		return fmt.Errorf("%s failed: %v; see %s, which ends with:\n%s", tool, err, b.logPath, tailFile(b.logPath, 15))
	}
	return nil
}

// output runs a short host command and returns its stdout.
func (b *build) output(ctx context.Context, tool, pkg string, args ...string) ([]byte, error) {
	bin, err := lookTool(tool, pkg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.log, "$ %s %s\n", tool, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = toolEnv()
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(b.log, &stderr)
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s failed: %v: %s", tool, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

type lineWriter struct {
	w   io.Writer
	fn  func(string)
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(p)
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.fn(string(l.buf))
		l.buf = nil
	}
}

var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookTool finds a host command, also in the sbin directories that a
// non-login PATH often lacks, and says which apt package provides it.
func lookTool(tool, pkg string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, d := range append(sbinDirs, "/usr/bin", "/bin") {
		p := filepath.Join(d, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &missingToolError{tool: tool, pkg: pkg}
}

func toolEnv() []string {
	env := []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	path := os.Getenv("PATH")
	for _, d := range sbinDirs {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	env = append(env, "PATH="+strings.TrimPrefix(path, ":"))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "LC_ALL" && k != "LANG" && k != "LANGUAGE" {
			env = append(env, kv)
		}
	}
	return env
}

// tailFile returns the last n lines of a file, indented.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "  (log unreadable: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func writeFileSync(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
