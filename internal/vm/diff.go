package vm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/store"
	"vers/internal/treediff"
)

// perVM are the files vers writes differently in each VM; a difference
// there is vers's, not the user's.
var perVM = map[string]string{
	"/etc/hostname":   "vers writes each VM's hostname (its alias) here when it boots",
	"/etc/hosts":      "vers keeps the 127.0.1.1 line naming each VM's hostname (its alias)",
	"/etc/machine-id": "vers gives each VM a machine id of its own",
}

// diffSide is one VM of a diff and what its guest listed.
type diffSide struct {
	c        *agent.Client
	row      store.VM
	mc       *machine
	manifest treediff.Manifest
	sums     map[string]agent.HashResult
	shown    api.VMRef // what the user named: the VM, or the commit
}

func (s *diffSide) ref() api.VMRef { return s.shown }

// diffTarget is what a side of a diff names: a running VM; a paused one,
// as a child branched from it for the diff (the VM stays paused); or, when
// ref names no VM but a commit or a tag, a VM started from that commit.
// session is the VM whose guest is asked; stop kills what was started.
type diffTarget struct {
	session string
	shown   api.VMRef
	start   func(ctx context.Context) (string, error)
}

func (m *Manager) resolveDiffTarget(ctx context.Context, ref string) (diffTarget, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	switch {
	case err == nil && row.State == api.StatePaused:
		return diffTarget{shown: api.VMRef{ID: row.ID, Alias: row.Alias}, start: func(ctx context.Context) (string, error) {
			res, err := m.Branch(ctx, row.ID, "", 1)
			if err != nil {
				return "", fmt.Errorf("vm %s is paused, and a child of it to compare could not be made: %w", label(row), err)
			}
			return res.Children[0].ID, nil
		}}, nil
	case err == nil:
		return diffTarget{session: row.ID, shown: api.VMRef{ID: row.ID, Alias: row.Alias}}, nil
	case !errors.Is(err, errdefs.ErrNotFound):
		return diffTarget{}, err
	}
	sc, cerr := m.store.ResolveCommit(ctx, ref)
	if cerr != nil {
		return diffTarget{}, fmt.Errorf("%w; nor is it a commit or tag", err)
	}
	t := diffTarget{shown: api.VMRef{Commit: sc.ID}}
	t.start = func(ctx context.Context) (string, error) {
		res, err := m.RunCommit(ctx, sc.ID, "", 1)
		if err != nil {
			return "", fmt.Errorf("start commit %s to compare it: %w", sc.ID, err)
		}
		return res.VMs[0].ID, nil
	}
	return t, nil
}

// begin starts what the target needs and returns the VM to ask, and what
// kills it after.
func (m *Manager) begin(ctx context.Context, t diffTarget) (string, func(), error) {
	if t.start == nil {
		return t.session, func() {}, nil
	}
	id, err := t.start(ctx)
	if err != nil {
		return "", nil, err
	}
	return id, func() {
		if _, err := m.Kill(context.WithoutCancel(ctx), id, true); err != nil {
			m.log.Warn("kill the VM a diff started", "vm", id, "err", err)
		}
	}, nil
}

// Diff compares the filesystems of two running VMs: both guests list their
// trees at once, the lists are compared, and only files whose metadata
// cannot settle it are hashed, on both sides at once (package treediff).
func (m *Manager) Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error) {
	start := time.Now()
	roots, exclude, err := diffScope(req)
	if err != nil {
		return api.FSDiff{}, err
	}
	targets := make([]diffTarget, 2)
	for i, ref := range []string{req.A, req.B} {
		if targets[i], err = m.resolveDiffTarget(ctx, ref); err != nil {
			return api.FSDiff{}, err
		}
	}
	if ta, tb := targets[0].shown, targets[1].shown; ta == tb {
		return api.FSDiff{}, fmt.Errorf("%s and %s are the same (%s); name two: %w", req.A, req.B, ta.ID+ta.Commit, errdefs.ErrInvalid)
	}
	sides := make([]*diffSide, 2)
	for i, t := range targets {
		id, stop, err := m.begin(ctx, t)
		if err != nil {
			return api.FSDiff{}, err
		}
		defer stop()
		c, row, mc, err := m.session(ctx, id)
		if err != nil {
			return api.FSDiff{}, err
		}
		shown := t.shown
		if shown.ID == "" {
			shown.ID = row.ID
		}
		sides[i] = &diffSide{c: c, row: row, mc: mc, manifest: treediff.Manifest{}, shown: shown}
	}
	a, b := sides[0], sides[1]
	method := ""
	if !req.Checksum {
		ok, err := m.journalManifests(ctx, sides, roots, exclude)
		if err != nil {
			return api.FSDiff{}, err
		}
		if ok {
			method = api.DiffJournal
		}
	}
	if method == "" {
		method = api.DiffWalk
		mreq := agent.ManifestRequest{Roots: roots, Exclude: exclude, Hash: req.Checksum}
		if err := m.bothSides(sides, func(s *diffSide) error { return s.list(ctx, mreq) }); err != nil {
			return api.FSDiff{}, err
		}
	}
	res := treediff.Compare(a.manifest, b.manifest)
	err = m.bothSides(sides, func(s *diffSide) error {
		list, err := s.c.Hash(ctx, res.Unsure)
		s.sums = map[string]agent.HashResult{}
		for _, h := range list {
			s.sums[h.Path] = h
		}
		return err
	})
	if err != nil {
		return api.FSDiff{}, err
	}
	changes, errs := treediff.Settle(res, a.sums, b.sums)
	out := api.FSDiff{A: a.ref(), B: b.ref(),
		Paths: roots, Exclude: exclude, Changes: []api.FSChange{}, Errors: errs, Method: method}
	for _, c := range changes {
		if note, ok := perVM[c.Path]; ok {
			c.Note = note
			out.Expected = append(out.Expected, c)
			continue
		}
		out.Changes = append(out.Changes, c)
	}
	if req.Content {
		if out.Content, err = m.contentDiffs(ctx, a, b, out.Changes, req.ContentMax); err != nil {
			return api.FSDiff{}, err
		}
	}
	out.Stat = treediff.Count(out.Changes)
	out.Stat.EntriesA, out.Stat.EntriesB = len(a.manifest), len(b.manifest)
	out.DurationMillis = time.Since(start).Milliseconds()
	return out, nil
}

// list adds the guest's manifest of req to the side's.
func (s *diffSide) list(ctx context.Context, req agent.ManifestRequest) error {
	_, err := s.c.Manifest(ctx, req, func(e agent.Entry) error {
		s.manifest[e.Path] = e
		return nil
	})
	return err
}

// maxJournalPaths is the most paths the journals may name for a diff to
// look at them alone; beyond it, walking the trees costs about as much.
const maxJournalPaths = 20000

// journalBatch is how many paths one manifest request names.
const journalBatch = 2000

// journalManifests lists, on both sides, only what either VM changed since
// they parted, as their change journals say (agent.Journal), and the whole
// of any directory one side has and the other has not. It reports false,
// having listed nothing that counts, when the journals cannot say: a guest
// without one, no common past, events lost, too many paths, or a file with
// other hard links (a change through one of them is recorded under its
// name only). Errors are returned only when the VMs cannot be asked at all.
func (m *Manager) journalManifests(ctx context.Context, sides []*diffSide, roots, exclude []string) (bool, error) {
	type journal struct {
		segs    []agent.Segment
		changed []agent.Changed
		err     error
	}
	js := make([]journal, len(sides))
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Go(func() { js[i].segs, js[i].changed, js[i].err = s.c.Journal(ctx) })
	}
	wg.Wait()
	for i, j := range js {
		switch {
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(j.err, agent.ErrClosed):
			return false, m.agentErr(sides[i].row, sides[i].mc, sides[i].c, j.err)
		case j.err != nil:
			m.log.Info("diff walks the trees: no change journal", "vm", sides[i].row.ID, "err", j.err)
			return false, nil
		}
	}
	shared := treediff.Shared(js[0].segs, js[1].segs)
	if shared < 0 {
		return false, nil
	}
	paths := treediff.Candidates(shared, roots, exclude, js[0].changed, js[1].changed)
	if len(paths) > maxJournalPaths {
		return false, nil
	}
	err := m.bothSides(sides, func(s *diffSide) error {
		for batch := range slices.Chunk(paths, journalBatch) {
			if err := s.list(ctx, agent.ManifestRequest{Roots: batch, Only: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, s := range sides {
		for _, e := range s.manifest {
			if e.Links > 1 {
				return false, nil
			}
		}
	}
	// A directory on one side only is listed whole there.
	walks := make([][]string, len(sides))
	for _, p := range paths {
		for i, s := range sides {
			e, ok := s.manifest[p]
			o, ook := sides[1-i].manifest[p]
			if ok && e.Type == agent.TypeDir && (!ook || o.Type != agent.TypeDir) && !treediff.Under(p, walks[i]) {
				walks[i] = append(walks[i], p)
			}
		}
	}
	err = m.bothSides(sides, func(s *diffSide) error {
		i := slices.Index(sides, s)
		if len(walks[i]) == 0 {
			return nil
		}
		return s.list(ctx, agent.ManifestRequest{Roots: walks[i], Exclude: exclude})
	})
	return err == nil, err
}

// bothSides runs fn on both sides at once; an agent error of either is
// classified as every agent error is.
func (m *Manager) bothSides(sides []*diffSide, fn func(*diffSide) error) error {
	errs := make([]error, len(sides))
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Go(func() {
			if err := fn(s); err != nil {
				errs[i] = fmt.Errorf("vm %s: %w", label(s.row), m.agentErr(s.row, s.mc, s.c, err))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// diffScope is the roots a diff walks and what it leaves out: the paths
// asked (default /), the default exclusions and those asked, minus those
// included. An included path inside an exclusion is walked as a root of
// its own.
func diffScope(req api.FSDiffRequest) (roots, exclude []string, err error) {
	clean := func(what string, list []string) ([]string, error) {
		var out []string
		for _, p := range list {
			if !filepath.IsAbs(p) {
				return nil, fmt.Errorf("%s %q: give an absolute path in the VM: %w", what, p, errdefs.ErrInvalid)
			}
			if p = filepath.Clean(p); !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
		return out, nil
	}
	if roots, err = clean("path", req.Paths); err != nil {
		return nil, nil, err
	}
	if len(roots) == 0 {
		roots = []string{"/"}
	}
	include, err := clean("--include", req.Include)
	if err != nil {
		return nil, nil, err
	}
	asked, err := clean("--exclude", req.Exclude)
	if err != nil {
		return nil, nil, err
	}
	for _, x := range append(slices.Clone(api.DefaultDiffExclude), asked...) {
		if !slices.Contains(include, x) && !slices.Contains(exclude, x) {
			exclude = append(exclude, x)
		}
	}
	for _, in := range include {
		if treediff.Under(in, exclude) && treediff.Under(in, roots) && !slices.Contains(roots, in) {
			roots = append(roots, in)
		}
	}
	return roots, exclude, nil
}
