package vm

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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
	"/etc/hostname": "vers writes each VM's hostname (its alias) here when it boots",
	"/etc/hosts":    "vers keeps the 127.0.1.1 line naming each VM's hostname (its alias)",
}

// diffSide is one VM of a diff and what its guest listed.
type diffSide struct {
	c        *agent.Client
	row      store.VM
	mc       *machine
	manifest treediff.Manifest
	sums     map[string]agent.HashResult
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
	sides := make([]*diffSide, 2)
	for i, ref := range []string{req.A, req.B} {
		c, row, mc, err := m.session(ctx, ref)
		if err != nil {
			return api.FSDiff{}, err
		}
		sides[i] = &diffSide{c: c, row: row, mc: mc, manifest: treediff.Manifest{}}
	}
	a, b := sides[0], sides[1]
	if a.row.ID == b.row.ID {
		return api.FSDiff{}, fmt.Errorf("%s and %s are the same VM (%s); name two: %w", req.A, req.B, a.row.ID, errdefs.ErrInvalid)
	}
	mreq := agent.ManifestRequest{Roots: roots, Exclude: exclude, Hash: req.Checksum}
	err = m.bothSides(sides, func(s *diffSide) error {
		_, err := s.c.Manifest(ctx, mreq, func(e agent.Entry) error {
			s.manifest[e.Path] = e
			return nil
		})
		return err
	})
	if err != nil {
		return api.FSDiff{}, err
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
	out := api.FSDiff{A: api.VMRef{ID: a.row.ID, Alias: a.row.Alias}, B: api.VMRef{ID: b.row.ID, Alias: b.row.Alias},
		Paths: roots, Exclude: exclude, Changes: []api.FSChange{}, Errors: errs}
	for _, c := range changes {
		if note, ok := perVM[c.Path]; ok {
			c.Note = note
			out.Expected = append(out.Expected, c)
			continue
		}
		out.Changes = append(out.Changes, c)
	}
	out.Stat = treediff.Count(out.Changes)
	out.Stat.EntriesA, out.Stat.EntriesB = len(a.manifest), len(b.manifest)
	out.DurationMillis = time.Since(start).Milliseconds()
	return out, nil
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
		if under(in, exclude) && under(in, roots) && !slices.Contains(roots, in) {
			roots = append(roots, in)
		}
	}
	return roots, exclude, nil
}

// under reports whether p is one of dirs or inside one.
func under(p string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool {
		return p == d || d == "/" || strings.HasPrefix(p, d+"/")
	})
}
