package api

import "time"

// Head is a project directory's HEAD as the CLI last reported it: the VM
// that commands run in that directory act on when none is named.
type Head struct {
	Dir       string    `json:"dir"`
	VMID      string    `json:"vm_id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SetHeadRequest reports that Dir's HEAD now names VM (an alias, id or id
// prefix; "" when HEAD was cleared).
type SetHeadRequest struct {
	Dir string `json:"dir"`
	VM  string `json:"vm,omitempty"`
}

// PickResult is what `vers pick --format json` prints: the VM kept and the
// VMs killed (with --dry-run, that would be).
type PickResult struct {
	Kept   VMRef   `json:"kept"`
	Killed []VMRef `json:"killed"`
	DryRun bool    `json:"dry_run,omitempty"`
	// Heads are the HEADs of other project directories that named a VM
	// killed (with --force) or that would be (with --dry-run).
	Heads []Head `json:"heads,omitempty"`
}
