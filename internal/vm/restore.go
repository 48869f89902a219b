package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"vers/api"
	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/qemu"
	"vers/internal/revert"
	"vers/internal/store"
)

// Starting VMs from a commit. The commit's state is first brought out of
// the chunk store into a snapshot of this host, exactly like the one a
// branch freezes (RAM file, device state, disk layer), and VMs are then
// started from that snapshot as a branch starts its children. The snapshot
// stays while a VM uses it, so the next VMs from the same commit start as
// fast as branch children. Of the disk chain only what this host lacks is
// written: a layer (or the image) still here, with the same content, is
// used where it is; the snapshot holds what it uses.

// RunCommit starts count VMs from commit ref (aliases as Branch names them).
func (m *Manager) RunCommit(ctx context.Context, ref, alias string, count int) (RunCommitResult, error) {
	start := time.Now()
	aliases, err := childAliases(alias, count)
	if err != nil {
		return RunCommitResult{}, err
	}
	sc, mf, err := m.loadCommit(ctx, ref)
	if err != nil {
		return RunCommitResult{}, err
	}
	if err := m.compatible(sc, mf); err != nil {
		return RunCommitResult{}, err
	}
	r, err := m.restored(ctx, sc, mf)
	if err != nil {
		return RunCommitResult{}, err
	}
	defer m.releaseHold(context.WithoutCancel(ctx), r.hold)
	b := &branch{m: m, snap: r.snap, pcfg: r.cfg, start: start, origin: &sc,
		ram: m.restoreFreezer(), snapUndo: revert.New(), undo: revert.New()}
	defer b.undo.Fail()
	rows := restoredRows(aliases, sc, mf)
	if err := m.reserve(ctx, admission{fresh: mf.MemMiB * len(rows)}, rows); err != nil {
		return RunCommitResult{}, err
	}
	b.kids = rows
	if err := b.startRestored(ctx); err != nil {
		return RunCommitResult{}, err
	}
	b.undo.Success()
	res := b.result()
	for _, v := range res.Children {
		m.publish(api.Event{Type: api.EventVMCreated, VMID: v.ID, Alias: v.Alias, VM: &v, Commit: sc.ID})
	}
	c, _ := m.commitAPI(ctx, sc)
	return RunCommitResult{Commit: c, VMs: res.Children, Restore: r.took, FirstReady: res.FirstReady, AllReady: res.AllReady}, nil
}

// startRestored makes the children's disks and machines, starts them and
// records them.
func (b *branch) startRestored(ctx context.Context) error {
	bg := context.WithoutCancel(ctx)
	for _, k := range b.kids {
		b.undo.Add(func() { b.m.store.DeleteVM(bg, k.ID); b.m.publishKilled(k) })
	}
	b.kidCfgs = make([]qemu.Config, len(b.kids))
	for i, k := range b.kids {
		c, err := b.childConfig(ctx, k)
		if err != nil {
			return err
		}
		b.kidCfgs[i] = c
	}
	if err := b.startChildren(ctx); err != nil {
		return err
	}
	return b.record(ctx)
}

// restoredRows are the rows of VMs started from a commit: roots, whose
// origin is the commit.
func restoredRows(aliases []string, sc store.Commit, mf manifest) []store.VM {
	rows := make([]store.VM, len(aliases))
	for i := range rows {
		rows[i] = store.VM{
			ID: uuid.NewString(), Alias: aliases[i], State: api.StateCreating,
			MemMiB: mf.MemMiB, VCPUs: mf.VCPUs, FsMiB: mf.FsMiB, Kernel: mf.Kernel, Rootfs: mf.Rootfs,
			CreatedAt: time.Now(), OriginCommit: sc.ID, LastCommit: sc.ID,
		}
	}
	return rows
}

// restoreFreezer is how VMs get their RAM from a restored snapshot: a clone
// each where the RAM filesystem clones, the snapshot's file mapped
// copy-on-write elsewhere (its "freeze" steps are never called).
func (m *Manager) restoreFreezer() ramFreezer {
	if m.cfg.CloneRAM {
		return cloneRAM{}
	}
	return &copyRAM{}
}

// loadCommit resolves ref and reads its manifest.
func (m *Manager) loadCommit(ctx context.Context, ref string) (store.Commit, manifest, error) {
	sc, err := m.store.ResolveCommit(ctx, ref)
	if err != nil {
		return sc, manifest{}, err
	}
	var mb chunk.Blob
	if err := json.Unmarshal([]byte(sc.Manifest), &mb); err != nil {
		return sc, manifest{}, fmt.Errorf("commit %s: its record is damaged: %v", short(sc.ID), err)
	}
	data, err := m.cfg.Chunks.ReadBytes(ctx, mb)
	if err != nil {
		return sc, manifest{}, chunkErr(sc, err)
	}
	mf, err := parseManifest(data)
	return sc, mf, err
}

// chunkErr says that a commit cannot be read from the chunk store, and why.
func chunkErr(sc store.Commit, err error) error {
	switch {
	case errors.Is(err, chunk.ErrCorrupt):
		return fmt.Errorf("commit %s cannot be restored: a chunk of it is corrupt on disk (%v); nothing was started from it: %w",
			short(sc.ID), err, errdefs.ErrConflict)
	case errors.Is(err, chunk.ErrMissing):
		return fmt.Errorf("commit %s cannot be restored: a chunk of it is missing from the store (%v); import it again: %w",
			short(sc.ID), err, errdefs.ErrConflict)
	}
	return fmt.Errorf("commit %s: %w", short(sc.ID), err)
}

// compatible says why a commit's state cannot run here, if it cannot.
func (m *Manager) compatible(sc store.Commit, mf manifest) error {
	if mf.Machine.Accel != m.cfg.Accel {
		return fmt.Errorf("commit %s was made of a VM running under %s, and VMs here run under %s: CPU state does not carry over; restore it on a host with %s: %w",
			short(sc.ID), mf.Machine.Accel, m.cfg.Accel, mf.Machine.Accel, errdefs.ErrInvalid)
	}
	if err := m.hv.Available(mf.Machine.Network); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	return m.cfg.Host.Check(mf.MemMiB, mf.VCPUs, mf.FsMiB)
}

// restoredSnap is a commit's state as a snapshot of this host, held for
// the caller until it lets go (releaseHold).
type restoredSnap struct {
	snap store.Snapshot
	cfg  qemu.Config
	hold string
	took time.Duration
}

// restored finds the snapshot a commit was restored into before, or makes it.
func (m *Manager) restored(ctx context.Context, sc store.Commit, mf manifest) (restoredSnap, error) {
	r := restoredSnap{hold: holdPrefix + "restore-" + uuid.NewString()}
	if sn, err := m.store.SnapshotOfCommit(ctx, sc.ID); err == nil {
		err := m.store.Update(ctx, func(tx *store.Tx) error {
			return tx.AddRef(ctx, store.Ref{VMID: r.hold, SnapshotID: sn.ID, Kind: store.RefMem})
		})
		if err == nil && exists(sn.MemPath) && exists(sn.StatePath) && exists(sn.Layer) {
			if cfg, ok := machineOfSnapshot(sn); ok {
				r.snap, r.cfg = sn, cfg
				return r, nil
			}
		}
		m.store.DropRefs(ctx, r.hold)
	}
	start := time.Now()
	sn, cfg, err := m.materialize(ctx, sc, mf, r.hold)
	if err != nil {
		return r, err
	}
	r.snap, r.cfg, r.took = sn, cfg, time.Since(start)
	m.log.Info("commit restored", "commit", short(sc.ID), "snapshot", sn.ID, "ms", r.took.Milliseconds())
	return r, nil
}

func machineOfSnapshot(sn store.Snapshot) (qemu.Config, bool) {
	var cfg qemu.Config
	if sn.Machine == "" || json.Unmarshal([]byte(sn.Machine), &cfg) != nil {
		return cfg, false
	}
	return cfg, true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// materialize brings a commit's state out of the chunk store into a new
// snapshot, recorded first (a crash leaves an unfinished snapshot, which
// a restarted daemon removes) and held under hold.
func (m *Manager) materialize(ctx context.Context, sc store.Commit, mf manifest, hold string) (store.Snapshot, qemu.Config, error) {
	m.chunkMu.RLock()
	defer m.chunkMu.RUnlock()
	bg := context.WithoutCancel(ctx)
	undo := revert.New()
	defer undo.Fail()
	sid := uuid.NewString()
	sn := store.Snapshot{
		ID: sid, CommitID: sc.ID, CreatedAt: time.Now(), Phase: store.PhasePrepared,
		Dir: filepath.Join(m.cfg.Layout.SnapshotsDir(), sid), MemPath: m.snapRAM(sid),
	}
	sn.StatePath = filepath.Join(sn.Dir, "state")
	if err := os.MkdirAll(sn.Dir, 0o700); err != nil {
		return sn, qemu.Config{}, err
	}
	if err := os.MkdirAll(m.cfg.RAMDir, 0o700); err != nil {
		return sn, qemu.Config{}, fmt.Errorf("RAM directory: %w", err)
	}
	undo.Add(func() { os.RemoveAll(sn.Dir); os.Remove(sn.MemPath) })
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateSnapshot(ctx, sn); err != nil {
			return err
		}
		return tx.AddRef(ctx, store.Ref{VMID: hold, SnapshotID: sid, Kind: store.RefMem})
	}); err != nil {
		return sn, qemu.Config{}, err
	}
	undo.Add(func() { m.store.DropRefs(bg, hold); m.store.DropSnapshot(bg, sid) })
	cfg, lower, err := m.writeSnapshot(ctx, sc, mf, &sn)
	if err != nil {
		return sn, cfg, err
	}
	sn.Machine, sn.Phase = machineJSON(cfg), store.PhaseReady
	if err := m.store.Update(ctx, func(tx *store.Tx) error {
		for _, id := range lower {
			if err := tx.AddRef(ctx, store.Ref{VMID: snapHolder + sid, SnapshotID: id, Kind: store.RefDisk}); err != nil {
				return err
			}
		}
		return tx.FinishSnapshot(ctx, sn)
	}); err != nil {
		return sn, cfg, err
	}
	undo.Success()
	return sn, cfg, nil
}

// writeSnapshot writes the files of a restored snapshot: the part of the
// disk chain this host lacks, the kernel if it lacks it, RAM and device
// state. It returns the machine VMs start from and the snapshots whose
// layers the chain uses.
func (m *Manager) writeSnapshot(ctx context.Context, sc store.Commit, mf manifest, sn *store.Snapshot) (qemu.Config, []string, error) {
	top, lower, err := m.restoreDisk(ctx, mf.Disk, sn.Dir)
	if err != nil {
		return qemu.Config{}, nil, chunkErr(sc, err)
	}
	sn.Layer = top
	cfg := mf.Machine
	cfg.Name, cfg.Dir, cfg.Disk = "", "", ""
	if cfg.Kernel, err = m.restoreFile(ctx, mf.KernelFile, filepath.Join(sn.Dir, "vmlinux")); err != nil {
		return cfg, nil, chunkErr(sc, err)
	}
	cfg.Initrd = ""
	if mf.InitrdFile != nil {
		if cfg.Initrd, err = m.restoreFile(ctx, *mf.InitrdFile, filepath.Join(sn.Dir, "initrd")); err != nil {
			return cfg, nil, chunkErr(sc, err)
		}
	}
	if err := m.inject("restore.ram"); err != nil {
		return cfg, nil, err
	}
	if err := m.cfg.Chunks.ReadFile(ctx, mf.RAM, sn.MemPath); err != nil {
		return cfg, nil, chunkErr(sc, fmt.Errorf("guest RAM: %w", err))
	}
	m.own(sn.MemPath)
	if err := m.cfg.Chunks.ReadFile(ctx, mf.State, sn.StatePath); err != nil {
		return cfg, nil, chunkErr(sc, fmt.Errorf("device state: %w", err))
	}
	os.Chmod(sn.MemPath, 0o400)
	cfg.MemPath, cfg.MemPrivate = sn.MemPath, false
	if !m.cfg.CloneRAM {
		cfg.MemPrivate = true
	}
	cfg.Incoming, cfg.Frozen, cfg.Accel = true, false, m.cfg.Accel
	return cfg, lower, nil
}

// restoreDisk makes a commit's disk chain usable here: the longest bottom
// part of it that this host has (same content, same chain) is used where
// it is; the rest is written into dir, each layer made to name the one
// below. It returns the top layer and the snapshots owning the layers used
// where they are.
func (m *Manager) restoreDisk(ctx context.Context, layers []diskLayer, dir string) (string, []string, error) {
	var below, belowFmt string
	var lower []string
	i := 0
	for ; i < len(layers); i++ {
		path := m.localCopy(ctx, layers[i].Blob, below)
		if path == "" {
			break
		}
		if sn, err := m.store.SnapshotWithLayer(ctx, path); err == nil {
			lower = append(lower, sn.ID)
		}
		below, belowFmt = path, layers[i].Format
	}
	for ; i < len(layers); i++ {
		path := filepath.Join(dir, fmt.Sprintf("layer-%d.%s", i, layers[i].Format))
		if err := m.cfg.Chunks.ReadFile(ctx, layers[i].Blob, path); err != nil {
			return "", nil, fmt.Errorf("disk layer %d: %w", i, err)
		}
		if below != "" {
			if err := m.hv.Rebase(ctx, path, below, belowFmt); err != nil {
				return "", nil, err
			}
		}
		os.Chmod(path, 0o400)
		below, belowFmt = path, layers[i].Format
	}
	return below, lower, nil
}

// localCopy is a file of this host that holds blob and, for a layer, is
// an overlay of below; or "".
func (m *Manager) localCopy(ctx context.Context, b chunk.Blob, below string) string {
	bj, _ := json.Marshal(b)
	files, err := m.store.FilesWithBlob(ctx, string(bj))
	if err != nil {
		return ""
	}
	for _, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil || !sameFile(f, fileID(f.Path, fi)) {
			continue
		}
		if backing, _, err := m.hv.Backing(f.Path); err == nil && backing == below {
			return f.Path
		}
	}
	return ""
}

// restoreFile is a file of this host holding blob, or the blob written to path.
func (m *Manager) restoreFile(ctx context.Context, b chunk.Blob, path string) (string, error) {
	if p := m.localCopy(ctx, b, ""); p != "" {
		return p, nil
	}
	if err := m.cfg.Chunks.ReadFile(ctx, b, path); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return path, nil
}
