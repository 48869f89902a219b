package vm

import (
	"context"
	"fmt"
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

var errNotYet = fmt.Errorf("restoring a VM in place is being built: %w", errdefs.ErrUnavailable)

// Restore puts VM ref back to commit's state in place, keeping its id and
// alias; on failure the VM runs on as it was.
func (m *Manager) Restore(ctx context.Context, ref, commit string) (api.VM, error) {
	return api.VM{}, errNotYet
}
