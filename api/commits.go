package api

import "time"

// StateSleeping: the VM's whole state is in a commit on disk and its QEMU
// is stopped; `vers wake` brings it back with the same id.
const StateSleeping = "sleeping"

// Commit kinds.
const (
	CommitKindCommit = "commit" // made by `vers commit`
	CommitKindSleep  = "sleep"  // made by `vers sleep`: the sleeping VM's state
)

// Commit is an immutable record of a VM's whole state (RAM, CPU and device
// state, disk) on persistent storage. Its id is the hash of its manifest.
type Commit struct {
	ID string `json:"id"`
	// Tags name it (see Tag).
	Tags []string `json:"tags,omitempty"`
	Kind string   `json:"kind"`
	// SourceVM and SourceAlias are the VM it was made of (which may be gone).
	SourceVM    string `json:"source_vm,omitempty"`
	SourceAlias string `json:"source_alias,omitempty"`
	// Parent is the commit the source's state descended from, if any.
	Parent    string    `json:"parent,omitempty"`
	Message   string    `json:"message,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// LogicalBytes is the size of everything it holds (RAM, device state,
	// disk layers, kernel) as a VM sees it; AddedBytes what storing it
	// added to disk when it was made (the rest was shared).
	LogicalBytes int64 `json:"logical_bytes"`
	AddedBytes   int64 `json:"added_bytes"`
	MemMiB       int   `json:"mem_size_mib"`
	VCPUs        int   `json:"vcpu_count"`
	FsMiB        int   `json:"fs_size_vm_mib"`
	// NeededBy lists the VMs that need it (a sleeping VM needs its sleep
	// commit); such a commit cannot be removed.
	NeededBy []string `json:"needed_by,omitempty"`
}

// CommitRequest asks versd to commit a VM.
type CommitRequest struct {
	Tag     string `json:"tag,omitempty"`
	Message string `json:"message,omitempty"`
}

// CommitResponse reports a commit.
type CommitResponse struct {
	Commit Commit `json:"commit"`
	// PauseMillis is how long the VM's guest was stopped; TotalMillis the
	// whole commit until it was durable.
	PauseMillis float64 `json:"pause_ms"`
	TotalMillis int64   `json:"total_ms"`
}

// RunCommitRequest asks versd to start VMs from a commit (POST
// /v1/commits/{ref}/run): `vers run-commit` (count 1) and `vers branch
// COMMIT --count N`.
type RunCommitRequest struct {
	// Alias names the VM; with Count > 1 they are Alias-1 … Alias-N.
	Alias string `json:"alias,omitempty"`
	Count int    `json:"count,omitempty"` // default 1
}

// RunCommitResponse reports the VMs started from a commit.
type RunCommitResponse struct {
	Commit Commit `json:"commit"`
	VMs    []VM   `json:"vms"`
	// RestoreMillis is the time spent bringing the commit's state out of the
	// store (0 when it was already on this host); FirstReadyMillis and
	// AllReadyMillis run from the request until the first and the last VM
	// accepted commands.
	RestoreMillis    int64 `json:"restore_ms"`
	FirstReadyMillis int64 `json:"first_ready_ms"`
	AllReadyMillis   int64 `json:"all_ready_ms"`
}

// Tag is a name for a commit.
type Tag struct {
	Name      string    `json:"name"`
	Commit    string    `json:"commit"`
	CreatedAt time.Time `json:"created_at"`
}

// TagRequest creates a tag (PUT /v1/tags/{name}); Move lets it replace a
// tag of that name (`vers tag mv`).
type TagRequest struct {
	Commit string `json:"commit"`
	Move   bool   `json:"move,omitempty"`
}

// GCRequest asks versd to remove old commits and the chunks nothing needs.
// Without KeepLast and OlderThanSeconds no commit is removed; only chunks
// no commit uses are freed.
type GCRequest struct {
	// KeepLast keeps the newest N commits of each source VM.
	KeepLast int `json:"keep_last,omitempty"`
	// OlderThanSeconds removes only commits older than that.
	OlderThanSeconds int64 `json:"older_than_s,omitempty"`
	DryRun           bool  `json:"dry_run,omitempty"`
}

// GCResponse reports a garbage collection.
type GCResponse struct {
	Removed    []string `json:"removed"`
	FreedBytes int64    `json:"freed_bytes"`
	FreedChunk int      `json:"freed_chunks"`
}

// Usage is what commits take on disk (GET /v1/commits/usage).
type Usage struct {
	Commits int `json:"commits"`
	// LogicalBytes sums every commit's logical size; StoredBytes is what the
	// chunk store holds on disk (shared chunks counted once, compressed).
	LogicalBytes int64 `json:"logical_bytes"`
	StoredBytes  int64 `json:"stored_bytes"`
	Chunks       int   `json:"chunks"`
	// PerCommit is each commit's logical size and the bytes it added.
	PerCommit []Commit `json:"per_commit"`
}

// ImportResponse reports an imported commit.
type ImportResponse struct {
	Commit     Commit `json:"commit"`
	NewChunks  int    `json:"new_chunks"`
	AddedBytes int64  `json:"added_bytes"`
}

// RestoreRequest puts a VM back to a commit's state in place.
type RestoreRequest struct {
	Commit string `json:"commit"`
}

// RemoveCommitsRequest removes commits (POST /v1/commits/remove): all of
// them or, when one cannot go (a VM needs it, it is not found), none.
type RemoveCommitsRequest struct {
	Commits []string `json:"commits"`
}

// RemoveCommitsResponse lists the ids of the commits removed.
type RemoveCommitsResponse struct {
	Removed []string `json:"removed"`
}
