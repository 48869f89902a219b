package vm

import (
	"time"

	"vers/api"
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
