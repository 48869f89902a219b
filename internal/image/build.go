package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	tools [][2]string // host commands the steps need, and their apt packages
	steps []step
}

// checkTools reports every missing host command at once, before any work.
func (r *recipe) checkTools() error {
	var missing, pkgs []string
	for _, t := range r.tools {
		if _, err := lookTool(t[0], t[1]); err != nil {
			missing = append(missing, t[0])
			if !slices.Contains(pkgs, t[1]) {
				pkgs = append(pkgs, t[1])
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("building %s needs %s; install with: apt-get install %s: %w",
		r.name, strings.Join(missing, ", "), strings.Join(pkgs, " "), ErrMissingTool)
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

	// kernel builds: the package, and the cache that holds its extract
	kpkg, kversion string
	kcache         string
	kcached        bool
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
	if err := r.checkTools(); err != nil {
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
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
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
	// A build is immutable from here on: disks are overlays on top of it.
	ents, err := os.ReadDir(b.out)
	if err != nil {
		return Info{}, err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(b.out, e.Name()), 0o444); err != nil {
				return Info{}, err
			}
		}
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

// Prune deletes the builds that are not current and that inUse says no VM
// or snapshot uses (it is asked about every file of a build, e.g. to match
// the backing files of disk overlays). Current builds are never deleted.
// It returns the directories removed.
func (s *Store) Prune(ctx context.Context, inUse func(path string) bool) ([]string, error) {
	if inUse == nil {
		return nil, fmt.Errorf("prune without an in-use check: %w", ErrInvalid)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "builds")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "locks"), 0o755); err != nil {
		return nil, err
	}
	var removed []string
	for _, name := range s.order {
		got, err := s.pruneOne(ctx, name, inUse)
		removed = append(removed, got...)
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func (s *Store) pruneOne(ctx context.Context, name string, inUse func(string) bool) ([]string, error) {
	unlock, err := s.lock(ctx, name, io.Discard)
	if err != nil {
		return nil, err
	}
	defer unlock()
	current, _ := filepath.EvalSymlinks(filepath.Join(s.dir, name))
	if current != "" {
		current, _ = filepath.Abs(current)
	}
	dirs, err := s.builds(name)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, d := range dirs {
		if abs, _ := filepath.Abs(d); abs == current {
			continue
		}
		used := false
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if inUse(filepath.Join(d, e.Name())) {
				used = true
				break
			}
		}
		if used {
			continue
		}
		if err := removeTree(d); err != nil {
			return removed, fmt.Errorf("prune %s: %w", d, err)
		}
		removed = append(removed, d)
	}
	return removed, nil
}
