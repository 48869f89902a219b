package vm

import (
	"context"
	"fmt"
	"io"
	"time"

	"vers/api"
	"vers/internal/errdefs"
)

// CommitOptions is what `vers commit` asks for.
type CommitOptions struct {
	Tag, Message string
}

// CommitResult reports one commit.
type CommitResult struct {
	Commit api.Commit
	// Pause is how long the guest was stopped; Total the whole commit,
	// until it was durable.
	Pause, Total time.Duration
}

// RunCommitResult reports VMs started from a commit.
type RunCommitResult struct {
	Commit  api.Commit
	VMs     []api.VM
	Restore time.Duration
	// FirstReady and AllReady run from the start of the call.
	FirstReady, AllReady time.Duration
}

var errNotYet = fmt.Errorf("commits are being built: %w", errdefs.ErrUnavailable)

// Commit freezes VM ref as a branch does and stores its whole state as an
// immutable commit; it returns once the commit is durable.
func (m *Manager) Commit(ctx context.Context, ref string, opts CommitOptions) (CommitResult, error) {
	return CommitResult{}, errNotYet
}

// Commits lists every commit, newest first.
func (m *Manager) Commits(ctx context.Context) ([]api.Commit, error) { return nil, errNotYet }

// GetCommit resolves ref (tag, id or id prefix) to a commit.
func (m *Manager) GetCommit(ctx context.Context, ref string) (api.Commit, error) {
	return api.Commit{}, errNotYet
}

// History is ref and the chain of commits it descends from, newest first.
func (m *Manager) History(ctx context.Context, ref string) ([]api.Commit, error) {
	return nil, errNotYet
}

// RemoveCommits removes commits (all or none); a commit a VM needs is a
// conflict naming the VMs. It returns the ids removed.
func (m *Manager) RemoveCommits(ctx context.Context, refs []string) ([]string, error) {
	return nil, errNotYet
}

// GC removes the commits the request selects and every chunk nothing needs.
func (m *Manager) GC(ctx context.Context, req api.GCRequest) (api.GCResponse, error) {
	return api.GCResponse{}, errNotYet
}

// Usage is what commits take on disk.
func (m *Manager) Usage(ctx context.Context) (api.Usage, error) { return api.Usage{}, errNotYet }

// Export writes commit ref as one self-contained archive to w.
func (m *Manager) Export(ctx context.Context, ref string, w io.Writer) error { return errNotYet }

// Import reads an archive made by Export and makes its commit restorable here.
func (m *Manager) Import(ctx context.Context, r io.Reader) (api.ImportResponse, error) {
	return api.ImportResponse{}, errNotYet
}

// RunCommit starts count VMs from commit ref (aliases as Branch names them).
func (m *Manager) RunCommit(ctx context.Context, ref, alias string, count int) (RunCommitResult, error) {
	return RunCommitResult{}, errNotYet
}

// Tags lists every tag.
func (m *Manager) Tags(ctx context.Context) ([]api.Tag, error) { return nil, errNotYet }

// SetTag names commit with name; an existing tag is a conflict unless move.
func (m *Manager) SetTag(ctx context.Context, name, commit string, move bool) (api.Tag, error) {
	return api.Tag{}, errNotYet
}

// RemoveTag removes a tag (the commit stays).
func (m *Manager) RemoveTag(ctx context.Context, name string) error { return errNotYet }

// Sleep writes VM ref's state to a commit and stops its QEMU.
func (m *Manager) Sleep(ctx context.Context, ref string) (api.VM, error) { return api.VM{}, errNotYet }

// Wake brings a sleeping VM back from its commit, same id and alias.
func (m *Manager) Wake(ctx context.Context, ref string) (api.VM, error) { return api.VM{}, errNotYet }

// Restore puts VM ref back to commit's state in place, keeping its id and
// alias; on failure the VM runs on as it was.
func (m *Manager) Restore(ctx context.Context, ref, commit string) (api.VM, error) {
	return api.VM{}, errNotYet
}
