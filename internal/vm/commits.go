package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"vers/api"
	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/store"
)

// The commits' history, tags, garbage collection and moves between hosts.

// commitAPI is a commit as the API shows it, with its tags and the VMs
// that need it.
func (m *Manager) commitAPI(ctx context.Context, sc store.Commit) (api.Commit, error) {
	tags, err := m.store.ListTags(ctx)
	if err != nil {
		return api.Commit{}, err
	}
	needs, err := m.store.VMsWithCommit(ctx, sc.ID, api.StateSleeping)
	if err != nil {
		return api.Commit{}, err
	}
	return toCommit(sc, tags, needs), nil
}

func toCommit(sc store.Commit, tags []store.Tag, needs []store.VM) api.Commit {
	c := api.Commit{
		ID: sc.ID, Kind: sc.Kind, SourceVM: sc.SourceVM, SourceAlias: sc.SourceAlias, Parent: sc.Parent,
		Message: sc.Message, CreatedAt: sc.CreatedAt, LogicalBytes: sc.Logical, AddedBytes: sc.Added,
		MemMiB: sc.MemMiB, VCPUs: sc.VCPUs, FsMiB: sc.FsMiB,
	}
	for _, t := range tags {
		if t.CommitID == sc.ID {
			c.Tags = append(c.Tags, t.Name)
		}
	}
	for _, v := range needs {
		c.NeededBy = append(c.NeededBy, label(v))
	}
	return c
}

// Commits lists every commit, newest first.
func (m *Manager) Commits(ctx context.Context) ([]api.Commit, error) {
	rows, err := m.store.ListCommits(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Commit, 0, len(rows))
	for _, sc := range rows {
		c, err := m.commitAPI(ctx, sc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// GetCommit resolves ref (tag, id or id prefix) to a commit.
func (m *Manager) GetCommit(ctx context.Context, ref string) (api.Commit, error) {
	sc, err := m.store.ResolveCommit(ctx, ref)
	if err != nil {
		return api.Commit{}, err
	}
	return m.commitAPI(ctx, sc)
}

// History is ref and the chain of commits it descends from, newest first.
// A parent removed since ends the chain.
func (m *Manager) History(ctx context.Context, ref string) ([]api.Commit, error) {
	sc, err := m.store.ResolveCommit(ctx, ref)
	if err != nil {
		return nil, err
	}
	var out []api.Commit
	seen := map[string]bool{}
	for !seen[sc.ID] {
		seen[sc.ID] = true
		c, err := m.commitAPI(ctx, sc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		if sc.Parent == "" {
			break
		}
		if sc, err = m.store.GetCommit(ctx, sc.Parent); err != nil {
			break
		}
	}
	return out, nil
}

// RemoveCommits removes commits, all or none: a commit a sleeping VM needs
// is a conflict naming the VMs. The chunks they alone used are freed.
func (m *Manager) RemoveCommits(ctx context.Context, refs []string) ([]string, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("name the commits to remove: %w", errdefs.ErrInvalid)
	}
	var ids []string
	for _, ref := range refs {
		sc, err := m.store.ResolveCommit(ctx, ref)
		if err != nil {
			return nil, err
		}
		c, err := m.commitAPI(ctx, sc)
		if err != nil {
			return nil, err
		}
		if len(c.NeededBy) > 0 {
			return nil, fmt.Errorf("commit %s holds the state of sleeping VM %s; `vers wake %s` or `vers kill %s` first: %w",
				short(sc.ID), strings.Join(c.NeededBy, ", "), c.NeededBy[0], c.NeededBy[0], errdefs.ErrConflict)
		}
		if !slices.Contains(ids, sc.ID) {
			ids = append(ids, sc.ID)
		}
	}
	if err := m.dropCommits(ctx, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// dropCommits forgets commits and frees the chunks nothing else uses.
func (m *Manager) dropCommits(ctx context.Context, ids []string) error {
	if err := m.forgetCommits(ctx, ids); err != nil {
		return err
	}
	if _, _, err := m.collectChunks(ctx); err != nil {
		m.log.Error("free removed commits' chunks", "err", err)
	}
	return nil
}

// forgetCommits removes commits' records only: their chunks stay until a
// collection (`vers commit gc`, a removal, a failed commit), and until then
// the next commit of the same VM finds them stored.
func (m *Manager) forgetCommits(ctx context.Context, ids []string) error {
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		for _, id := range ids {
			if err := tx.DeleteCommit(ctx, id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	m.publishCommits(api.EventCommitRemoved, ids)
	return nil
}

// GC removes the commits the request selects — untagged, needed by no VM,
// beyond the newest KeepLast of their source VM and older than OlderThan —
// and every chunk no commit left uses.
func (m *Manager) GC(ctx context.Context, req api.GCRequest) (api.GCResponse, error) {
	if req.KeepLast < 0 || req.OlderThanSeconds < 0 {
		return api.GCResponse{}, fmt.Errorf("keep-last and older-than must not be negative: %w", errdefs.ErrInvalid)
	}
	all, err := m.Commits(ctx)
	if err != nil {
		return api.GCResponse{}, err
	}
	res := api.GCResponse{Removed: gcSelect(all, req, time.Now())}
	if req.DryRun {
		return res, nil
	}
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		for _, id := range res.Removed {
			if err := tx.DeleteCommit(ctx, id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return api.GCResponse{}, err
	}
	m.publishCommits(api.EventCommitRemoved, res.Removed)
	res.FreedChunk, res.FreedBytes, err = m.collectChunks(ctx)
	return res, err
}

// gcSelect picks what GC removes from commits listed newest first. With
// neither KeepLast nor OlderThan nothing is picked.
func gcSelect(all []api.Commit, req api.GCRequest, now time.Time) []string {
	removed := []string{}
	if req.KeepLast == 0 && req.OlderThanSeconds == 0 {
		return removed
	}
	kept := map[string]int{}
	for _, c := range all {
		src := c.SourceVM
		kept[src]++
		switch {
		case len(c.Tags) > 0 || len(c.NeededBy) > 0:
		case req.KeepLast > 0 && kept[src] <= req.KeepLast:
		case req.OlderThanSeconds > 0 && now.Sub(c.CreatedAt) < time.Duration(req.OlderThanSeconds)*time.Second:
		default:
			removed = append(removed, c.ID)
		}
	}
	return removed
}

// collectChunks deletes every chunk no recorded commit uses, and forgets
// stored files whose chunks go (first, so that a crash half way never
// leaves a file known by chunks that are gone). Nothing writes the chunk
// store meanwhile.
func (m *Manager) collectChunks(ctx context.Context) (int, int64, error) {
	m.chunkMu.Lock()
	defer m.chunkMu.Unlock()
	live, err := m.liveChunks(ctx)
	if err != nil {
		return 0, 0, err
	}
	files, err := m.store.ListFileBlobs(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, f := range files {
		var b chunk.Blob
		if json.Unmarshal([]byte(f.Blob), &b) != nil || !blobLive(b, live) {
			if err := m.store.DeleteFileBlob(ctx, f.Path); err != nil {
				return 0, 0, err
			}
		}
	}
	n, freed, err := m.cfg.Chunks.Collect(ctx, live)
	if n > 0 {
		m.log.Info("chunks freed", "chunks", n, "mib", freed>>20)
	}
	return n, freed, err
}

// blobLive: the blob's root chunk is live (a blob is live or dead whole).
func blobLive(b chunk.Blob, live map[chunk.Hash]struct{}) bool {
	if b.Size == 0 || b.Root == (chunk.Hash{}) {
		return true
	}
	_, ok := live[b.Root]
	return ok
}

// liveChunks is every chunk a recorded commit uses.
func (m *Manager) liveChunks(ctx context.Context) (map[chunk.Hash]struct{}, error) {
	rows, err := m.store.ListCommits(ctx)
	if err != nil {
		return nil, err
	}
	live := map[chunk.Hash]struct{}{}
	mark := func(h chunk.Hash) error { live[h] = struct{}{}; return nil }
	for _, sc := range rows {
		var mb chunk.Blob
		if err := json.Unmarshal([]byte(sc.Manifest), &mb); err != nil {
			return nil, fmt.Errorf("commit %s: damaged record: %v", short(sc.ID), err)
		}
		if err := m.cfg.Chunks.Refs(ctx, mb, mark); err != nil {
			return nil, fmt.Errorf("commit %s: %w", short(sc.ID), err)
		}
		data, err := m.cfg.Chunks.ReadBytes(ctx, mb)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", short(sc.ID), err)
		}
		mf, err := parseManifest(data)
		if err != nil {
			return nil, err
		}
		for _, b := range mf.blobs() {
			if err := m.cfg.Chunks.Refs(ctx, b, mark); err != nil {
				return nil, fmt.Errorf("commit %s: %w", short(sc.ID), err)
			}
		}
	}
	return live, nil
}

// Usage is what commits take on disk.
func (m *Manager) Usage(ctx context.Context) (api.Usage, error) {
	all, err := m.Commits(ctx)
	if err != nil {
		return api.Usage{}, err
	}
	u := api.Usage{Commits: len(all), PerCommit: all}
	for _, c := range all {
		u.LogicalBytes += c.LogicalBytes
	}
	u.Chunks, u.StoredBytes, err = m.cfg.Chunks.Usage(ctx)
	return u, err
}

// Export writes commit ref as one self-contained archive to w.
func (m *Manager) Export(ctx context.Context, ref string, w io.Writer) error {
	sc, mf, err := m.loadCommit(ctx, ref)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(mf)
	m.chunkMu.RLock()
	defer m.chunkMu.RUnlock()
	if _, err := m.cfg.Chunks.Export(ctx, w, data, mf.blobs()); err != nil {
		return chunkErr(sc, err)
	}
	return nil
}

// Import reads an archive made by Export and makes its commit restorable
// here. A commit that is here already is not an error.
func (m *Manager) Import(ctx context.Context, r io.Reader) (api.ImportResponse, error) {
	sc, st, err := m.importCommit(ctx, r)
	if err != nil {
		return api.ImportResponse{}, err
	}
	c, err := m.commitAPI(ctx, sc)
	return api.ImportResponse{Commit: c, NewChunks: st.NewChunks, AddedBytes: st.NewBytes}, err
}

func (m *Manager) importCommit(ctx context.Context, r io.Reader) (store.Commit, chunk.Stats, error) {
	m.chunkMu.RLock()
	defer m.chunkMu.RUnlock()
	data, st, err := m.cfg.Chunks.Import(ctx, r)
	if err != nil {
		return store.Commit{}, st, fmt.Errorf("import: %w: %w", err, errdefs.ErrInvalid)
	}
	mf, err := parseManifest(data)
	if err != nil {
		return store.Commit{}, st, err
	}
	for _, b := range mf.blobs() {
		if err := m.cfg.Chunks.Check(ctx, b, false); err != nil {
			return store.Commit{}, st, fmt.Errorf("import: the archive lacks part of the commit (%v): %w", err, errdefs.ErrInvalid)
		}
	}
	mb, mst, err := m.cfg.Chunks.PutBytes(ctx, data)
	if err != nil {
		return store.Commit{}, st, err
	}
	st.Add(mst)
	if old, err := m.store.GetCommit(ctx, mb.Root.String()); err == nil {
		return old, st, nil
	}
	mj, _ := json.Marshal(mb)
	sc := store.Commit{
		ID: mb.Root.String(), Manifest: string(mj), Kind: mf.Kind, SourceVM: mf.SourceVM, SourceAlias: mf.SourceAlias,
		Parent: mf.Parent, Message: mf.Message, CreatedAt: mf.CreatedAt, Logical: mf.logical(), Added: st.NewBytes,
		MemMiB: mf.MemMiB, VCPUs: mf.VCPUs, FsMiB: mf.FsMiB,
	}
	if err := m.cfg.Chunks.Backend().Sync(ctx); err != nil {
		return sc, st, err
	}
	return sc, st, m.recordCommit(ctx, sc, "")
}

// Tags lists every tag.
func (m *Manager) Tags(ctx context.Context) ([]api.Tag, error) {
	rows, err := m.store.ListTags(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Tag, 0, len(rows))
	for _, t := range rows {
		out = append(out, api.Tag{Name: t.Name, Commit: t.CommitID, CreatedAt: t.CreatedAt})
	}
	return out, nil
}

// SetTag names commit with name; an existing tag is a conflict unless move.
func (m *Manager) SetTag(ctx context.Context, name, commit string, move bool) (api.Tag, error) {
	if err := validateTag(name); err != nil {
		return api.Tag{}, err
	}
	sc, err := m.store.ResolveCommit(ctx, commit)
	if err != nil {
		return api.Tag{}, err
	}
	t := store.Tag{Name: name, CommitID: sc.ID, CreatedAt: time.Now().UTC()}
	if err := m.store.Update(ctx, func(tx *store.Tx) error { return tx.SetTag(ctx, t, move) }); err != nil {
		return api.Tag{}, err
	}
	m.publish(api.Event{Type: api.EventTagSet, Tag: t.Name, Commit: t.CommitID})
	return api.Tag{Name: t.Name, Commit: t.CommitID, CreatedAt: t.CreatedAt}, nil
}

// RemoveTag removes a tag (the commit stays).
func (m *Manager) RemoveTag(ctx context.Context, name string) error {
	if err := m.store.DeleteTag(ctx, name); err != nil {
		return err
	}
	m.publish(api.Event{Type: api.EventTagRemoved, Tag: name})
	return nil
}

// validateTag: a tag is named as an alias is, and never reads as a commit id.
func validateTag(name string) error {
	if name == "" {
		return fmt.Errorf("a tag needs a name: %w", errdefs.ErrInvalid)
	}
	if err := ValidateAlias(name); err != nil {
		return fmt.Errorf("tag %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not eight or more hex digits (that reads as a commit id): %w",
			name, errdefs.ErrInvalid)
	}
	return nil
}

// checkNewTag refuses, before anything is done, a tag that cannot be made.
func (m *Manager) checkNewTag(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	if err := validateTag(name); err != nil {
		return err
	}
	tags, err := m.store.ListTags(ctx)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if t.Name == name {
			return fmt.Errorf("tag %q exists already (commit %s); choose another name, or `vers tag mv %s COMMIT` after committing: %w",
				name, short(t.CommitID), name, errdefs.ErrConflict)
		}
	}
	return nil
}
