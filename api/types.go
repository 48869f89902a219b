// Package api holds the wire types of the vers API: the contract between
// versd, the CLI, the Go client and any browser. openapi.yaml beside this file
// describes the same contract; the two change together.
package api

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// VM states.
const (
	StateCreating = "creating" // being booted; never visible to a user for long
	StateRunning  = "running"
	// StatePaused: its vCPUs are stopped and its memory is kept. A VM a
	// user paused (POST /v1/vms/{ref}/pause) has the StateReason
	// ReasonPaused and stays paused until it is resumed, a daemon restart
	// included; one a full host disk paused says so and resumes by itself.
	StatePaused = "paused"
	StateDead   = "dead" // its QEMU is gone; kill it to free what it owned
	// StateUnresponsive: its QEMU runs but does not answer (stopped, hung);
	// kill it to free what it owned.
	StateUnresponsive = "unresponsive"
)

// ReasonPaused is the StateReason of a VM a user paused. Clients may
// compare it (it is part of the contract, unlike other reasons).
const ReasonPaused = "paused by `vers pause`"

// VM is one virtual machine as the API shows it.
type VM struct {
	ID    string `json:"id"`
	Alias string `json:"alias,omitempty"`
	State string `json:"state"`
	// StateReason says why a VM is paused, dead or unresponsive, when known
	// (e.g. "host disk full: …").
	StateReason string    `json:"state_reason,omitempty"`
	ParentID    string    `json:"parent_id,omitempty"`
	MemMiB      int       `json:"mem_size_mib"`
	VCPUs       int       `json:"vcpu_count"`
	FsMiB       int       `json:"fs_size_vm_mib"`
	Kernel      string    `json:"kernel"`
	Rootfs      string    `json:"rootfs"`
	PID         int       `json:"pid,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// BootMillis is how long the VM took from create to agent-ready.
	BootMillis int64 `json:"boot_ms,omitempty"`
	// OriginCommit is the commit the VM was started from (run-commit, or a
	// branch of a commit), if it was.
	OriginCommit string `json:"origin_commit,omitempty"`
	// LastCommit is the newest commit in the VM's history: the last one
	// made of it, or the one it (or an ancestor) was started from.
	LastCommit string `json:"last_commit,omitempty"`
}

// CreateVMRequest asks versd to boot a new VM.
type CreateVMRequest struct {
	Alias  string `json:"alias,omitempty"`
	MemMiB int    `json:"mem_size_mib"`
	VCPUs  int    `json:"vcpu_count"`
	FsMiB  int    `json:"fs_size_vm_mib"`
	Kernel string `json:"kernel"`
	Rootfs string `json:"rootfs"`
	// DryRun only validates the request (alias, sizes against the host,
	// image names) and answers 204, so a client refuses bad input before it
	// builds images. It is a body field, not a query parameter, so that a
	// daemon too old to know it refuses the request instead of booting a VM.
	DryRun bool `json:"dry_run,omitempty"`
	// Network is "isolated" (the default when empty) or "none".
	Network string `json:"network,omitempty"`
}

// DeleteVMResponse lists every VM a kill removed.
type DeleteVMResponse struct {
	Deleted []string `json:"deleted"`
}

// Error is the body of every non-2xx response.
type Error struct {
	// Code is one of the Code* values; clients decide on it, never on Message.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Deleted lists the VMs a kill removed before it failed.
	Deleted []string `json:"deleted,omitempty"`
}

// Error codes, mapped to HTTP statuses by the daemon and to exit codes by the CLI.
const (
	CodeInvalid     = "invalid"     // 400: bad input
	CodeNotFound    = "not_found"   // 404
	CodeConflict    = "conflict"    // 409: duplicate alias, VM has children, wrong state
	CodeTimeout     = "timeout"     // 504
	CodeInternal    = "internal"    // 500
	CodeUnavailable = "unavailable" // 503: a host prerequisite is missing (QEMU, tools)
	CodeNoSpace     = "no_space"    // 507: a filesystem in the VM or on the host is full
	// CodeUnauthorized is the client's word for a 401, which versd answers
	// over TCP without a body to a request without the right bearer token.
	CodeUnauthorized = "unauthorized"
)

// ExecRequest is the first message on an exec WebSocket.
type ExecRequest struct {
	// Command is a shell string run with bash -c; Argv is used when it is empty.
	Command   string   `json:"command,omitempty"`
	Argv      []string `json:"argv,omitempty"`
	Env       []string `json:"env,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
	// TTY runs on a pseudo-terminal; with no Command and no Argv it is a login shell.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	Term string `json:"term,omitempty"`
	// Stdin says the client will send stdin frames; without it stdin is closed at once.
	Stdin bool `json:"stdin,omitempty"`
}

// Check says what is wrong with an exec request, or nil: the one check of
// what a request may hold, made by the CLI before it sends one and by versd
// when it gets one.
func (r ExecRequest) Check() error {
	switch {
	case r.Command == "" && len(r.Argv) == 0 && !r.TTY:
		return errors.New("nothing to run: give a command")
	case r.TimeoutMS < 0:
		return errors.New("timeout must not be negative")
	}
	return CheckEnv(r.Env)
}

// CheckEnv says which environment entry is not KEY=VALUE, if one is not.
func CheckEnv(env []string) error {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			key := k
			if key == "" {
				key = "NAME"
			}
			return fmt.Errorf("-e %q: write it KEY=VALUE (e.g. -e %s=1)", kv, key)
		}
	}
	return nil
}

// Exec stream frames. Binary WebSocket messages carry data: the first byte is
// the stream (StreamStdin, StreamStdout, StreamStderr), the rest the bytes; a
// data frame of length 1 is EOF on that stream. Text messages carry
// ExecControl as JSON.
const (
	StreamStdin  byte = 0
	StreamStdout byte = 1
	StreamStderr byte = 2
)

// ExecControl is a control message on an exec WebSocket, in either direction.
type ExecControl struct {
	Type string `json:"type"` // client: "resize", "signal"; server: "started", "exit", "error"
	// resize
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// signal
	Signal int `json:"signal,omitempty"`
	// exit
	ExitCode int    `json:"exit_code"`
	Signaled string `json:"signaled,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	// error
	Error *Error `json:"error,omitempty"`
}

// Health is the daemon's answer to GET /v1/health.
type Health struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
	Accel   string `json:"accel"`
	VMs     int    `json:"vms"`
	// Build identifies the executable versd runs: two builds differ. A
	// client compares it with the versd it would start itself.
	Build string `json:"build"`
	// Busy counts the requests in flight, exec sessions included.
	Busy int `json:"busy"`
	// Stale says why this daemon should be restarted (its executable or
	// agent file is gone or was replaced), or is empty.
	Stale string `json:"stale,omitempty"`
	// Listen is the TCP address versd also serves on (--listen), or empty;
	// a client that restarts versd passes it on.
	Listen string `json:"listen,omitempty"`
}

// Image is one kernel or root filesystem image.
type Image struct {
	Name    string    `json:"name"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status"` // ImageBuilt, ImageStale, ImageMissing
	SizeMiB int       `json:"size_mib,omitempty"`
	Built   time.Time `json:"built,omitzero"`
	Recipe  string    `json:"recipe,omitempty"`
}

// Image states.
const (
	ImageBuilt   = "built"   // built from its current recipe
	ImageStale   = "stale"   // built, but its recipe or the agent changed since
	ImageMissing = "missing" // never built
)

// BuildEvent is one line of the JSON-lines stream that answers
// POST /v1/images/{name}/build: any number of Progress lines, then exactly
// one Image (built) or Error.
type BuildEvent struct {
	Progress string `json:"progress,omitempty"`
	Image    *Image `json:"image,omitempty"`
	Error    *Error `json:"error,omitempty"`
}

// BranchRequest asks versd to branch a running VM.
type BranchRequest struct {
	// Alias names the child; with Count > 1 the children are Alias-1 … Alias-N.
	Alias string `json:"alias,omitempty"`
	Count int    `json:"count,omitempty"` // default 1
}

// BranchResponse reports a branch.
type BranchResponse struct {
	Parent     VM     `json:"parent"`
	Children   []VM   `json:"children"`
	SnapshotID string `json:"snapshot_id"`
	// PauseMillis is how long the parent's guest was stopped.
	PauseMillis float64 `json:"pause_ms"`
	// FirstReadyMillis and AllReadyMillis run from the request until the
	// first and the last child accepted commands.
	FirstReadyMillis int64 `json:"first_ready_ms"`
	AllReadyMillis   int64 `json:"all_ready_ms"`
}
