package api

import "time"

// Event types on GET /v1/events.
const (
	// EventHello is the first event of every stream: VMs holds every VM as
	// it was when the stream began; the changes follow.
	EventHello = "hello"
	// EventVMCreated: a VM was booted (Commit says from which commit, for
	// run-commit). VM is the VM.
	EventVMCreated = "vm.created"
	// EventVMBranched: VM is the parent after the branch, Children the new
	// VMs, SnapshotID and PauseMillis the branch's.
	EventVMBranched = "vm.branched"
	// EventVMState: VM's state changed (running, paused, sleeping, dead,
	// unresponsive) or it was restored, rebooted, woken; Reason says why.
	EventVMState = "vm.state"
	// EventVMKilled: the VM VMID is gone.
	EventVMKilled = "vm.killed"
	// EventCommitCreated: Commit was recorded, made of VMID (or imported),
	// with the tag Tag if it was given one.
	EventCommitCreated = "commit.created"
	// EventCommitRemoved: Commit's record is gone.
	EventCommitRemoved = "commit.removed"
	// EventTagSet: Tag names Commit; EventTagRemoved: Tag is gone.
	EventTagSet     = "tag.set"
	EventTagRemoved = "tag.removed"
	// EventHeadMoved: the HEAD of the project directory Dir names VMID
	// now ("" when it was cleared).
	EventHeadMoved = "head.moved"
	// EventLagged is the last event of a stream whose reader fell behind:
	// the daemon dropped it rather than wait. Subscribe again; the new
	// stream's hello is the state to start from.
	EventLagged = "lagged"
)

// Event is one message on the GET /v1/events WebSocket (a JSON text
// message). A change may be announced after a hello that already shows
// it: apply VM events by id (create or replace, delete on vm.killed).
type Event struct {
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	VMID  string    `json:"vm_id,omitempty"`
	Alias string    `json:"alias,omitempty"`
	// VM is the VM after the change (vm.created, vm.branched's parent,
	// vm.state).
	VM *VM `json:"vm,omitempty"`
	// VMs is every VM (hello).
	VMs         []VM    `json:"vms,omitempty"`
	Children    []VM    `json:"children,omitempty"`
	SnapshotID  string  `json:"snapshot_id,omitempty"`
	PauseMillis float64 `json:"pause_ms,omitempty"`
	Commit      string  `json:"commit,omitempty"`
	Tag         string  `json:"tag,omitempty"`
	Reason      string  `json:"reason,omitempty"`
	Dir         string  `json:"dir,omitempty"`
}
