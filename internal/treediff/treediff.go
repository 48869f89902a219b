// Package treediff compares two manifests of filesystem trees (as the guest
// agent lists them) and says what differs.
//
// Content is compared by hash only where metadata cannot settle it. Two
// VMs branched from one another share their disk up to the branch, inode
// numbers and times included, so a file neither has touched since has the
// same inode, size, mtime and ctime on both sides; the kernel sets ctime at
// every change of a file, and nothing in the guest can set it back. Such a
// file is taken as unchanged without reading it. A file whose size differs
// has changed. The rest (same size, other times) is hashed on both sides.
// With checksums asked for, every file is hashed and only the hashes count.
package treediff

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"vers/api"
	"vers/internal/agent"
)

// Manifest is one side's entries by path.
type Manifest map[string]agent.Entry

// Result is the comparison before the unsure files are hashed.
type Result struct {
	Changes []api.FSChange
	// Unsure are files present on both sides, the same in metadata that
	// can tell, whose content must be hashed to decide.
	Unsure []string
	Errors []string
}

// Compare compares a and b. Paths are sorted in the result.
func Compare(a, b Manifest) Result {
	var r Result
	for _, p := range sortedUnion(a, b) {
		ea, inA := a[p]
		eb, inB := b[p]
		for _, e := range []struct {
			side string
			in   bool
			e    agent.Entry
		}{{"A", inA, ea}, {"B", inB, eb}} {
			if e.in && e.e.Err != "" {
				r.Errors = append(r.Errors, fmt.Sprintf("%s in %s: %s", p, e.side, e.e.Err))
			}
		}
		switch {
		case !inA:
			r.Changes = append(r.Changes, api.FSChange{Path: p, Kind: api.ChangeAdded, B: Public(eb)})
		case !inB:
			r.Changes = append(r.Changes, api.FSChange{Path: p, Kind: api.ChangeRemoved, A: Public(ea)})
		default:
			what, unsure := compareEntry(ea, eb)
			if unsure {
				r.Unsure = append(r.Unsure, p)
			}
			if len(what) > 0 || unsure {
				r.Changes = append(r.Changes, api.FSChange{Path: p, Kind: api.ChangeChanged, What: what, A: Public(ea), B: Public(eb)})
			}
		}
	}
	return r
}

// compareEntry says which aspects of one path differ, and whether its
// content is still to be compared by hash.
func compareEntry(a, b agent.Entry) (what []string, unsure bool) {
	if a.Type != b.Type {
		return []string{"type"}, false
	}
	if a.Mode != b.Mode {
		what = append(what, "mode")
	}
	if a.UID != b.UID || a.GID != b.GID {
		what = append(what, "owner")
	}
	switch a.Type {
	case agent.TypeSymlink:
		if a.Link != b.Link {
			what = append(what, "target")
		}
	case agent.TypeFile:
		switch {
		case a.Sum != "" && b.Sum != "":
			if a.Sum != b.Sum {
				what = append(what, "content")
			}
		case a.Size != b.Size:
			what = append(what, "content")
		case a.Ino == b.Ino && a.MTime == b.MTime && a.CTime == b.CTime:
		default:
			unsure = true
		}
	}
	return what, unsure
}

// Settle decides the unsure files of r with their hashes on both sides
// (by path; a missing or failed hash is an error) and returns the changes
// that remain.
func Settle(r Result, sumA, sumB map[string]agent.HashResult) ([]api.FSChange, []string) {
	unsure := map[string]bool{}
	for _, p := range r.Unsure {
		unsure[p] = true
	}
	errs := r.Errors
	var out []api.FSChange
	for _, c := range r.Changes {
		if !unsure[c.Path] {
			out = append(out, c)
			continue
		}
		ha, hb := sumA[c.Path], sumB[c.Path]
		switch {
		case ha.Sum == "" || hb.Sum == "":
			errs = append(errs, fmt.Sprintf("%s: content not compared: %s", c.Path, firstOf(ha.Err, hb.Err, "no hash")))
		case ha.Sum != hb.Sum:
			c.What = append(c.What, "content")
			c.A.SHA256, c.B.SHA256 = ha.Sum, hb.Sum
		}
		if len(c.What) > 0 {
			out = append(out, c)
		}
	}
	return out, errs
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func sortedUnion(a, b Manifest) []string {
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return paths
}

// Public is an entry as the API shows it.
func Public(e agent.Entry) *api.FSEntry {
	typ := map[string]string{agent.TypeFile: "file", agent.TypeDir: "dir", agent.TypeSymlink: "symlink"}[e.Type]
	if typ == "" {
		typ = "other"
	}
	return &api.FSEntry{Type: typ, Mode: fmt.Sprintf("%04o", e.Mode), UID: e.UID, GID: e.GID, Size: e.Size,
		ModTime: time.Unix(0, e.MTime).UTC(), Target: e.Link, SHA256: e.Sum}
}

// Count fills the stat of changes.
func Count(changes []api.FSChange) api.FSDiffStat {
	var s api.FSDiffStat
	for _, c := range changes {
		switch c.Kind {
		case api.ChangeAdded:
			s.Added++
		case api.ChangeRemoved:
			s.Removed++
		default:
			s.Changed++
		}
	}
	return s
}

// Shared is the index of the last segment two journals both have (the one
// in which they parted), or -1 when they have none in common or either lost
// events in it or after it: then only a walk of both trees can compare
// them.
func Shared(a, b []agent.Segment) int {
	c := -1
	for i := 0; i < len(a) && i < len(b) && a[i].ID == b[i].ID; i++ {
		c = i
	}
	if c < 0 {
		return -1
	}
	for _, segs := range [][]agent.Segment{a, b} {
		for _, s := range segs[c:] {
			if s.Lost {
				return -1
			}
		}
	}
	return c
}

// Candidates are the paths either journal changed in segment shared or
// later, sorted, that lie under one of roots and outside exclude. Within the
// segment they parted in, positions are not trusted: an event queued
// when one VM was made from the other's state is read by both, and a
// later change of the same file may be merged into it by the kernel.
func Candidates(shared int, roots, exclude []string, journals ...[]agent.Changed) []string {
	seen := map[string]bool{}
	var out []string
	for _, list := range journals {
		for _, c := range list {
			if c.Seg < shared || seen[c.Path] || !Under(c.Path, roots) || Under(c.Path, exclude) {
				continue
			}
			seen[c.Path] = true
			out = append(out, c.Path)
		}
	}
	slices.Sort(out)
	return out
}

// Under reports whether p is one of dirs or inside one.
func Under(p string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool {
		return p == d || d == "/" || strings.HasPrefix(p, d+"/")
	})
}
