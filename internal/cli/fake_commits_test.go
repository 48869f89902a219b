package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"vers/api"
	"vers/client"
)

// commitState is the fake daemon's commits and tags, and a record of what
// was asked of them.
type commitState struct {
	commits []api.Commit // newest first
	tags    []api.Tag

	commitErr, runCommitErr, gcErr, verbErr error
	// archive is what an export writes; exportFail makes it fail half way.
	archive    []byte
	exportFail error
	gcRes      api.GCResponse

	committed  []commitCall
	runCommits []runCommitCall
	gcs        []api.GCRequest
	imported   [][]byte
	verbs      []string // "sleep <id>", "wake <id>", "restore <id> <commit>"
}

type commitCall struct {
	Ref string
	Req api.CommitRequest
}

type runCommitCall struct {
	Ref string
	Req api.RunCommitRequest
}

// Commit ids of the fake: 64 hex digits.
var (
	commitA = "3f9a2c1b7e4d" + strings.Repeat("a", 52)
	commitB = "7c41d09e2b3a" + strings.Repeat("b", 52)
)

func notFound(format string, args ...any) error {
	return &client.Error{Status: 404, Code: api.CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &client.Error{Status: 409, Code: api.CodeConflict, Message: fmt.Sprintf(format, args...)}
}

// findCommit resolves ref as versd does: a tag, an id or a unique id prefix.
func (d *fakeDaemon) findCommit(ref string) (int, error) {
	if ref == "" {
		return 0, client.ErrNoCommitRef
	}
	for _, t := range d.tags {
		if t.Name == ref {
			ref = t.Commit
		}
	}
	found := -1
	for i, c := range d.commits {
		if strings.HasPrefix(c.ID, ref) {
			if found >= 0 {
				return 0, &client.Error{Status: 400, Code: api.CodeInvalid, Message: fmt.Sprintf("commit prefix %q is ambiguous", ref)}
			}
			found = i
		}
	}
	if found < 0 {
		return 0, notFound("no commit or tag %q", ref)
	}
	return found, nil
}

// tagged gives each commit its tags.
func (d *fakeDaemon) tagged(c api.Commit) api.Commit {
	c.Tags = nil
	for _, t := range d.tags {
		if t.Commit == c.ID {
			c.Tags = append(c.Tags, t.Name)
		}
	}
	return c
}

func (d *fakeDaemon) Commit(_ context.Context, ref string, req api.CommitRequest) (api.CommitResponse, error) {
	v, err := d.find(ref)
	if err != nil {
		return api.CommitResponse{}, err
	}
	d.committed = append(d.committed, commitCall{ref, req})
	if d.commitErr != nil {
		return api.CommitResponse{}, d.commitErr
	}
	if req.Tag != "" && slices.ContainsFunc(d.tags, func(t api.Tag) bool { return t.Name == req.Tag }) {
		return api.CommitResponse{}, conflict("tag %q exists", req.Tag)
	}
	c := api.Commit{
		ID: fmt.Sprintf("%012x", len(d.commits)+1) + strings.Repeat("c", 52), Kind: api.CommitKindCommit,
		SourceVM: v.ID, SourceAlias: v.Alias, Message: req.Message, CreatedAt: time.Now(),
		LogicalBytes: 1288490189, AddedBytes: 84 << 20,
	}
	d.commits = append([]api.Commit{c}, d.commits...)
	if req.Tag != "" {
		d.tags = append(d.tags, api.Tag{Name: req.Tag, Commit: c.ID, CreatedAt: c.CreatedAt})
	}
	return api.CommitResponse{Commit: d.tagged(c), PauseMillis: 13.2, TotalMillis: 3400}, nil
}

func (d *fakeDaemon) ListCommits(context.Context) ([]api.Commit, error) {
	var out []api.Commit
	for _, c := range d.commits {
		out = append(out, d.tagged(c))
	}
	return out, nil
}

func (d *fakeDaemon) GetCommit(_ context.Context, ref string) (api.Commit, error) {
	i, err := d.findCommit(ref)
	if err != nil {
		return api.Commit{}, err
	}
	return d.tagged(d.commits[i]), nil
}

func (d *fakeDaemon) CommitHistory(_ context.Context, ref string) ([]api.Commit, error) {
	i, err := d.findCommit(ref)
	if err != nil {
		return nil, err
	}
	var out []api.Commit
	for c := d.commits[i]; ; {
		out = append(out, d.tagged(c))
		j := slices.IndexFunc(d.commits, func(p api.Commit) bool { return p.ID == c.Parent })
		if c.Parent == "" || j < 0 {
			return out, nil
		}
		c = d.commits[j]
	}
}

// RemoveCommits removes all or none, as versd does.
func (d *fakeDaemon) RemoveCommits(_ context.Context, refs []string) ([]string, error) {
	var ids []string
	for _, ref := range refs {
		i, err := d.findCommit(ref)
		if err != nil {
			return nil, err
		}
		if c := d.commits[i]; len(c.NeededBy) > 0 {
			return nil, conflict("commit %s is needed by VM %s", shortCommit(c.ID), strings.Join(c.NeededBy, ", "))
		}
		ids = append(ids, d.commits[i].ID)
	}
	d.commits = slices.DeleteFunc(d.commits, func(c api.Commit) bool { return slices.Contains(ids, c.ID) })
	return ids, nil
}

func (d *fakeDaemon) GCCommits(_ context.Context, req api.GCRequest) (api.GCResponse, error) {
	d.gcs = append(d.gcs, req)
	return d.gcRes, d.gcErr
}

func (d *fakeDaemon) CommitUsage(context.Context) (api.Usage, error) {
	u := api.Usage{Commits: len(d.commits), Chunks: 10 * len(d.commits)}
	for _, c := range d.commits {
		u.LogicalBytes += c.LogicalBytes
		u.StoredBytes += c.AddedBytes
		u.PerCommit = append(u.PerCommit, d.tagged(c))
	}
	return u, nil
}

// ExportCommit writes the archive, or half of it and then fails, as the
// client does when versd cuts the stream.
func (d *fakeDaemon) ExportCommit(_ context.Context, ref string, w io.Writer) error {
	if _, err := d.findCommit(ref); err != nil {
		return err
	}
	if d.exportFail != nil {
		w.Write(d.archive[:len(d.archive)/2])
		return d.exportFail
	}
	_, err := w.Write(d.archive)
	return err
}

func (d *fakeDaemon) ImportCommit(_ context.Context, r io.Reader) (api.ImportResponse, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return api.ImportResponse{}, err
	}
	d.imported = append(d.imported, b)
	if len(b) == 0 {
		return api.ImportResponse{}, &client.Error{Status: 400, Code: api.CodeInvalid, Message: "not an archive: empty"}
	}
	c := api.Commit{ID: commitB, Kind: api.CommitKindCommit, LogicalBytes: 2 << 30, CreatedAt: time.Now()}
	d.commits = append([]api.Commit{c}, d.commits...)
	return api.ImportResponse{Commit: c, NewChunks: 7, AddedBytes: 3 << 20}, nil
}

func (d *fakeDaemon) RunCommit(_ context.Context, ref string, req api.RunCommitRequest) (api.RunCommitResponse, error) {
	i, err := d.findCommit(ref)
	if err != nil {
		return api.RunCommitResponse{}, err
	}
	d.runCommits = append(d.runCommits, runCommitCall{ref, req})
	if d.runCommitErr != nil {
		return api.RunCommitResponse{}, d.runCommitErr
	}
	c := d.tagged(d.commits[i])
	res := api.RunCommitResponse{Commit: c, RestoreMillis: 120, FirstReadyMillis: 400, AllReadyMillis: 500}
	n := max(req.Count, 1)
	for k := 1; k <= n; k++ {
		alias := req.Alias
		if alias != "" && n > 1 {
			alias = fmt.Sprintf("%s-%d", alias, k)
		}
		v := api.VM{ID: fmt.Sprintf("%08d-run", len(d.vms)), Alias: alias, State: api.StateRunning, OriginCommit: c.ID}
		d.vms = append(d.vms, v)
		res.VMs = append(res.VMs, v)
	}
	return res, nil
}

func (d *fakeDaemon) ListTags(context.Context) ([]api.Tag, error) {
	return append([]api.Tag(nil), d.tags...), nil
}

func (d *fakeDaemon) SetTag(_ context.Context, name string, req api.TagRequest) (api.Tag, error) {
	i, err := d.findCommit(req.Commit)
	if err != nil {
		return api.Tag{}, err
	}
	t := api.Tag{Name: name, Commit: d.commits[i].ID, CreatedAt: time.Now()}
	j := slices.IndexFunc(d.tags, func(t api.Tag) bool { return t.Name == name })
	switch {
	case j >= 0 && !req.Move:
		return api.Tag{}, conflict("tag %q exists (commit %s); `vers tag mv` moves it", name, shortCommit(d.tags[j].Commit))
	case j >= 0:
		d.tags[j] = t
	default:
		d.tags = append(d.tags, t)
	}
	return t, nil
}

func (d *fakeDaemon) RemoveTag(_ context.Context, name string) error {
	j := slices.IndexFunc(d.tags, func(t api.Tag) bool { return t.Name == name })
	if j < 0 {
		return notFound("no tag %q", name)
	}
	d.tags = slices.Delete(d.tags, j, j+1)
	return nil
}

// verb does a sleep, wake or restore of VM ref, leaving it in state.
func (d *fakeDaemon) verb(ref, call, state string) (api.VM, error) {
	v, err := d.find(ref)
	if err != nil {
		return api.VM{}, err
	}
	d.verbs = append(d.verbs, strings.TrimSpace(fmt.Sprintf(call, v.ID)))
	if d.verbErr != nil {
		return api.VM{}, d.verbErr
	}
	for i := range d.vms {
		if d.vms[i].ID == v.ID {
			d.vms[i].State = state
			v = d.vms[i]
		}
	}
	return v, nil
}

func (d *fakeDaemon) Sleep(_ context.Context, ref string) (api.VM, error) {
	return d.verb(ref, "sleep %s", api.StateSleeping)
}

func (d *fakeDaemon) Wake(_ context.Context, ref string) (api.VM, error) {
	return d.verb(ref, "wake %s", api.StateRunning)
}

func (d *fakeDaemon) Restore(_ context.Context, ref string, req api.RestoreRequest) (api.VM, error) {
	if _, err := d.findCommit(req.Commit); err != nil {
		return api.VM{}, err
	}
	return d.verb(ref, "restore %s "+req.Commit, api.StateRunning)
}
