// Package fanout runs one command in many VMs at once and groups the VMs by
// identical result: the run behind `vers execute --on/--children/--tree`,
// `vers compare` and `vers diff --exec` (in the CLI), and behind versd's
// POST /v1/fanout (the web UI's). It knows nothing of how a command
// reaches a VM: the caller gives the run of one. A VM whose run fails is a
// row with its error, never the end of the others.
package fanout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"vers/api"
	"vers/internal/errdefs"
)

// Parallel bounds the commands in flight at once; the rest wait their
// turn, so a tree of a hundred VMs does not open a hundred sessions at once.
const Parallel = 16

// DefaultMaxOutput is how much of each of a row's streams is kept.
const DefaultMaxOutput = 1 << 20

// One runs the command in v and is its row (Group left 0).
type One func(ctx context.Context, v api.VM) api.FanoutRow

// Run runs one in every VM, at most Parallel at once, and is the rows in
// the order of vms, grouped. A VM whose turn has not come when ctx ends is
// failed(v, the cause).
func Run(ctx context.Context, command string, vms []api.VM, one One, failed func(api.VM, error) api.FanoutRow) api.FanoutResult {
	rows := make([]api.FanoutRow, len(vms))
	sem := make(chan struct{}, Parallel)
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				rows[i] = one(ctx, v)
			case <-ctx.Done():
				rows[i] = failed(v, context.Cause(ctx))
			}
		})
	}
	wg.Wait()
	return Result(command, rows)
}

// Result is rows as one result: each row's group set, the groups, and the
// highest of the rows' exit codes.
func Result(command string, rows []api.FanoutRow) api.FanoutResult {
	res := api.FanoutResult{Command: command, Results: rows, Groups: Group(rows)}
	for _, row := range rows {
		res.ExitCode = max(res.ExitCode, row.ExitCode)
	}
	return res
}

// key is what makes two rows the same result.
func key(r api.FanoutRow) string {
	if r.Error != nil {
		return "error\x00" + r.Error.Code + "\x00" + r.Error.Message
	}
	return fmt.Sprintf("%d\x00%t\x00%s\x00%s", r.ExitCode, r.TimedOut, r.Stdout, r.Stderr)
}

// Group sets each row's Group and returns the groups, numbered in the
// order of their first row.
func Group(rows []api.FanoutRow) []api.FanoutGroup {
	index := map[string]int{}
	var groups []api.FanoutGroup
	for i := range rows {
		k := key(rows[i])
		g, ok := index[k]
		if !ok {
			groups = append(groups, api.FanoutGroup{ExitCode: rows[i].ExitCode})
			g = len(groups)
			index[k] = g
		}
		groups[g-1].VMs = append(groups[g-1].VMs, rows[i].VM)
		rows[i].Group = g
	}
	return groups
}

// Children is parent's children among all, oldest first.
func Children(all []api.VM, parent string) []api.VM {
	var kids []api.VM
	for _, v := range all {
		if v.ParentID == parent {
			kids = append(kids, v)
		}
	}
	slices.SortFunc(kids, func(a, b api.VM) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return kids
}

// Subtree is root and its descendants among all, depth first, as `vers
// status` draws them.
func Subtree(all []api.VM, root api.VM) []api.VM {
	out := []api.VM{root}
	for _, k := range Children(all, root.ID) {
		out = append(out, Subtree(all, k)...)
	}
	return out
}

// Ref names v in a result.
func Ref(v api.VM) api.VMRef { return api.VMRef{ID: v.ID, Alias: v.Alias} }

// CappedBuffer keeps the first Max bytes written to it and counts the rest.
type CappedBuffer struct {
	Max     int64
	buf     []byte
	dropped int64
}

func (b *CappedBuffer) Write(p []byte) (int, error) {
	keep := min(int64(len(p)), max(b.Max-int64(len(b.buf)), 0))
	b.buf = append(b.buf, p[:keep]...)
	b.dropped += int64(len(p)) - keep
	return len(p), nil
}

// String is the text kept, as valid UTF-8 (as JSON has it).
func (b *CappedBuffer) String() string { return strings.ToValidUTF8(string(b.buf), "\uFFFD") }

// Dropped is how many bytes were written beyond Max.
func (b *CappedBuffer) Dropped() int64 { return b.dropped }

// Source is where VMs are looked up: the CLI's client of versd, or versd's
// own VMs.
type Source interface {
	GetVM(ctx context.Context, ref string) (api.VM, error)
	ListVMs(ctx context.Context) ([]api.VM, error)
}

// Spec says which VMs a fan-out runs in: the VMs named, the children of
// one, or one and all its descendants. Set exactly one.
type Spec struct {
	On       []string
	Children string
	Tree     string
}

// Set reports whether the spec names any VM.
func (s Spec) Set() bool { return len(s.On) > 0 || s.Children != "" || s.Tree != "" }

// Targets resolves the spec into VMs, before anything runs: a name that
// matches no VM fails the whole call. Errors name the field as prefix
// (and "on", "children" or "tree") says: "--" for the CLI's flags.
func (s Spec) Targets(ctx context.Context, src Source, prefix string) ([]api.VM, error) {
	if len(s.On) > 0 {
		var vms []api.VM
		seen := map[string]bool{}
		for _, ref := range s.On {
			v, err := src.GetVM(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("%son %s: %w", prefix, ref, err)
			}
			if !seen[v.ID] {
				seen[v.ID] = true
				vms = append(vms, v)
			}
		}
		return vms, nil
	}
	ref, field := s.Tree, "tree"
	if s.Children != "" {
		ref, field = s.Children, "children"
	}
	root, err := src.GetVM(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s%s %s: %w", prefix, field, ref, err)
	}
	all, err := src.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	if s.Children != "" {
		kids := Children(all, root.ID)
		if len(kids) == 0 {
			name := root.Alias
			if name == "" {
				name = root.ID
			}
			return nil, fmt.Errorf("vm %s has no children; `vers status %s` shows it: %w", name, name, errdefs.ErrNotFound)
		}
		return kids, nil
	}
	return Subtree(all, root), nil
}
