package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"vers/api"
	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/fault"
	"vers/internal/qemu"
	"vers/internal/store"
)

// A commit is a branch without children whose snapshot is then written to
// the chunk store (internal/chunk) while the VM runs on:
//
//	freeze   the branch's phases with no child: the VM is paused exactly as
//	         long as a branch pauses it; the snapshot (RAM, device state,
//	         disk layer) is held for the commit
//	persist  the snapshot's RAM and device state, the disk chain's files and
//	         the kernel are stored as chunks (an immutable file already
//	         stored — the image, an older layer — is not read again); the
//	         manifest naming them is stored last; every chunk is made
//	         durable, then the commit is recorded, then made durable again
//	release  the hold goes, and the snapshot's RAM with it
//
// A commit that fails leaves no commit: the chunks it wrote that nothing
// else uses are removed at once (the disk may be full), and the VM runs on.

// commitTimeout bounds the writing of a commit.
const commitTimeout = 30 * time.Minute

// Commit freezes VM ref as a branch does and stores its whole state as an
// immutable commit; it returns once the commit is durable.
func (m *Manager) Commit(ctx context.Context, ref string, opts CommitOptions) (CommitResult, error) {
	start := time.Now()
	if err := m.checkNewTag(ctx, opts.Tag); err != nil {
		return CommitResult{}, err
	}
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return CommitResult{}, err
	}
	mc, err := m.workable(ctx, row)
	if err != nil {
		return CommitResult{}, err
	}
	if err := mc.lock(ctx, "commit "+label(row)); err != nil {
		return CommitResult{}, err
	}
	b, err := m.branchLocked(ctx, start, row, mc, nil, holdPrefix+"commit-"+row.ID, false)
	mc.unlock()
	if err != nil {
		return CommitResult{}, err
	}
	if !b.paused {
		m.notePause(row.ID, "commit", b.pause)
	}
	c, err := m.persistHeld(ctx, b, api.CommitKindCommit, opts)
	if err != nil {
		return CommitResult{}, err
	}
	return CommitResult{Commit: c, Pause: b.pause, Total: time.Since(start)}, nil
}

// persistHeld writes the snapshot a branch without children made and
// lets go of it, whatever happens.
func (m *Manager) persistHeld(ctx context.Context, b *branch, kind string, opts CommitOptions) (api.Commit, error) {
	defer m.releaseHold(context.WithoutCancel(ctx), b.hold)
	row, err := m.store.GetVM(ctx, b.parent.ID)
	if err != nil {
		return api.Commit{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	sc, err := m.persist(ctx, row, b.snap, b.pcfg, kind, opts)
	if err != nil {
		return api.Commit{}, err
	}
	row.LastCommit = sc.ID
	if err := m.store.UpdateVM(ctx, row); err != nil {
		m.log.Error("record vm's last commit", "vm", row.ID, "err", err)
	}
	return m.commitAPI(ctx, sc)
}

// persist stores snapshot sn of row as a commit and records it.
func (m *Manager) persist(ctx context.Context, row store.VM, sn store.Snapshot, cfg qemu.Config, kind string, opts CommitOptions) (store.Commit, error) {
	sc, err := m.writeCommit(ctx, row, sn, cfg, kind, opts)
	if err != nil {
		return sc, m.commitFailed(ctx, err)
	}
	return sc, nil
}

// writeCommit is persist's work, while no garbage collection runs.
func (m *Manager) writeCommit(ctx context.Context, row store.VM, sn store.Snapshot, cfg qemu.Config, kind string, opts CommitOptions) (store.Commit, error) {
	m.chunkMu.RLock()
	defer m.chunkMu.RUnlock()
	start := time.Now()
	mf := manifest{
		Version: manifestVersion, Kind: kind, CreatedAt: time.Now().UTC(),
		SourceVM: row.ID, SourceAlias: row.Alias, Parent: row.LastCommit, Message: opts.Message,
		MemMiB: row.MemMiB, VCPUs: row.VCPUs, FsMiB: row.FsMiB, Kernel: row.Kernel, Rootfs: row.Rootfs,
		Machine: cfg,
	}
	var added chunk.Stats
	if err := m.storeFiles(ctx, &mf, sn, cfg, &added); err != nil {
		return store.Commit{}, err
	}
	data, _ := json.Marshal(mf)
	mb, st, err := m.cfg.Chunks.PutBytes(ctx, data)
	if err != nil {
		return store.Commit{}, err
	}
	added.Add(st)
	if err := m.inject("commit.before-sync"); err != nil {
		return store.Commit{}, err
	}
	if err := m.cfg.Chunks.Backend().Sync(ctx); err != nil {
		return store.Commit{}, err
	}
	mj, _ := json.Marshal(mb)
	sc := store.Commit{
		ID: mb.Root.String(), Manifest: string(mj), Kind: kind, SourceVM: row.ID, SourceAlias: row.Alias,
		Parent: row.LastCommit, Message: opts.Message, CreatedAt: mf.CreatedAt,
		Logical: mf.logical(), Added: added.NewBytes, MemMiB: row.MemMiB, VCPUs: row.VCPUs, FsMiB: row.FsMiB,
	}
	fault.Crash("commit.crash-before-record")
	if err := m.recordCommit(ctx, sc, opts.Tag); err != nil {
		return store.Commit{}, err
	}
	m.log.Info("committed", "commit", sc.ID[:12], "vm", row.ID, "kind", kind, "logical_mib", sc.Logical>>20,
		"added_mib", sc.Added>>20, "new_chunks", added.NewChunks, "write_ms", time.Since(start).Milliseconds())
	return sc, nil
}

// storeFiles stores every file of the snapshot's state in the chunk store
// and names them in mf.
func (m *Manager) storeFiles(ctx context.Context, mf *manifest, sn store.Snapshot, cfg qemu.Config, added *chunk.Stats) error {
	chain, err := m.diskChain(sn.Layer)
	if err != nil {
		return err
	}
	for _, l := range chain {
		b, err := m.storedFile(ctx, l.path, added)
		if err != nil {
			return err
		}
		mf.Disk = append(mf.Disk, diskLayer{Blob: b, Format: l.format})
	}
	if mf.KernelFile, err = m.storedFile(ctx, cfg.Kernel, added); err != nil {
		return err
	}
	if cfg.Initrd != "" {
		b, err := m.storedFile(ctx, cfg.Initrd, added)
		if err != nil {
			return err
		}
		mf.InitrdFile = &b
	}
	if err := m.inject("commit.ram"); err != nil {
		return err
	}
	if mf.RAM, err = m.putFile(ctx, sn.MemPath, added); err != nil {
		return fmt.Errorf("store guest RAM: %w", err)
	}
	if mf.State, err = m.putFile(ctx, sn.StatePath, added); err != nil {
		return fmt.Errorf("store device state: %w", err)
	}
	return nil
}

func (m *Manager) putFile(ctx context.Context, path string, added *chunk.Stats) (chunk.Blob, error) {
	b, st, err := m.cfg.Chunks.PutFile(ctx, path, nil)
	if err != nil {
		return b, err
	}
	added.Add(st)
	return b, nil
}

// storedFile stores an immutable file (an image, a snapshot's layer), or
// finds it stored already: a file is read and hashed once, then known by
// its device, inode, size and modification time.
func (m *Manager) storedFile(ctx context.Context, path string, added *chunk.Stats) (chunk.Blob, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return chunk.Blob{}, err
	}
	id := fileID(path, fi)
	if known, err := m.store.GetFileBlob(ctx, path); err == nil && sameFile(known, id) {
		var b chunk.Blob
		if json.Unmarshal([]byte(known.Blob), &b) == nil {
			if ok, _ := m.cfg.Chunks.Backend().Has(ctx, b.Root); ok || b.Size == 0 {
				added.Logical += b.Size
				return b, nil
			}
		}
	}
	b, err := m.putFile(ctx, path, added)
	if err != nil {
		return b, fmt.Errorf("store %s: %w", path, err)
	}
	bj, _ := json.Marshal(b)
	id.Blob = string(bj)
	if err := m.store.PutFileBlob(ctx, id); err != nil {
		m.log.Warn("remember stored file", "path", path, "err", err)
	}
	return b, nil
}

func fileID(path string, fi os.FileInfo) store.FileBlob {
	f := store.FileBlob{Path: path, Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		f.Dev, f.Ino = st.Dev, st.Ino
	}
	return f
}

func sameFile(a, b store.FileBlob) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.MtimeNS == b.MtimeNS
}

// chainFile is one file of a disk chain.
type chainFile struct{ path, format string }

// maxChain bounds a disk chain (a loop in backing files is an error).
const maxChain = 1024

// diskChain is the chain of files under top, bottom first.
func (m *Manager) diskChain(top string) ([]chainFile, error) {
	format, err := m.hv.Format(top)
	if err != nil {
		return nil, err
	}
	chain := []chainFile{{top, format}}
	for path := top; len(chain) < maxChain; {
		backing, format, err := m.hv.Backing(path)
		if err != nil {
			return nil, fmt.Errorf("disk chain of %s: %w", top, err)
		}
		if backing == "" {
			for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
				chain[i], chain[j] = chain[j], chain[i]
			}
			return chain, nil
		}
		chain = append(chain, chainFile{backing, format})
		path = backing
	}
	return nil, fmt.Errorf("disk chain of %s is longer than %d files", top, maxChain)
}

// recordCommit records a stored commit (and its tag) and makes the record
// durable.
func (m *Manager) recordCommit(ctx context.Context, sc store.Commit, tag string) error {
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateCommit(ctx, sc); err != nil {
			return err
		}
		if tag == "" {
			return nil
		}
		return tx.SetTag(ctx, store.Tag{Name: tag, CommitID: sc.ID, CreatedAt: time.Now()}, false)
	}); err != nil {
		return err
	}
	if err := m.cfg.Chunks.Backend().Sync(ctx); err != nil {
		return err
	}
	m.publish(api.Event{Type: api.EventCommitCreated, Commit: sc.ID, VMID: sc.SourceVM, Alias: sc.SourceAlias, Tag: tag})
	return nil
}

// commitFailed removes the chunks a failed commit wrote (nothing else uses
// them) and says what happened.
func (m *Manager) commitFailed(ctx context.Context, err error) error {
	if _, _, cerr := m.collectChunks(context.WithoutCancel(ctx)); cerr != nil {
		m.log.Error("remove a failed commit's chunks", "err", cerr)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("commit failed: the disk under %s is full; nothing was committed and the VM runs on; free space and commit again: %w",
			m.cfg.Layout.Home, errdefs.ErrNoSpace)
	}
	return fmt.Errorf("commit failed (nothing was committed; the VM runs on): %w", err)
}
