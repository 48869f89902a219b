package mcpserver

import (
	"context"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
)

// tools are the handlers of the server's tools, over v.
type tools struct{ v Verbs }

// register adds every tool. A new verb is a line here, its arguments and
// result types, and a method of Verbs.
func (t *tools) register(srv *mcp.Server) {
	add(srv, readOnly("status", "List the VMs (or the one named) with their state, parent and id; head marks the project's current VM (HEAD)."), t.status)
	add(srv, &mcp.Tool{Name: "run", Description: "Boot a new VM from the project's vers.toml (fields given override it) and make it HEAD. " +
		"The first boot builds the images, which can take minutes. Returns the VM and its id."}, t.run)
	add(srv, &mcp.Tool{Name: "execute", Description: "Run a shell command (bash -c) in a VM (HEAD if vm is left out) and wait for it to exit. " +
		"Returns its stdout, stderr, exit_code and duration, and the id of the VM. A non-zero exit_code is a result, not an error. " +
		"The command is killed after timeout_seconds (default 600, at most 3600), or when the call is cancelled. " +
		"Output over max_output_bytes per stream (default 65536) keeps its beginning and end, and a note says how many bytes were dropped."}, t.execute)
	add(srv, &mcp.Tool{Name: "branch", Description: "Branch a running VM (HEAD if vm is left out) while it runs: each child starts from its exact memory, processes and disk; " +
		"the parent pauses only milliseconds. vm may also name a commit or tag, whose state the children start from. " +
		"count makes several children from one snapshot; checkout moves HEAD to the (one) child. Returns the children's ids."}, t.branch)
	add(srv, &mcp.Tool{Name: "kill", Description: "Stop a VM and delete everything it owns; with recursive, also every VM branched from it. " +
		"A VM with children is refused (code conflict) without recursive. Returns the ids deleted.", Annotations: destructive()}, t.kill)
	add(srv, &mcp.Tool{Name: "checkout", Description: "Point HEAD, the VM tools act on when none is named, at vm; with vm left out, return the VM HEAD names (null when none)."}, t.checkout)
	add(srv, readOnly("info", "Show a VM (HEAD if vm is left out) in detail: state, parent and children, origin, machine, network, the memory and disk it uses on the host, its last pause."), t.info)
	add(srv, &mcp.Tool{Name: "cp", Description: "Copy a file (or with recursive a directory) between this host and a VM. Exactly one of src and dst is in a VM, written VM:PATH (\":PATH\" is HEAD's); " +
		"the other is a path on this host (relative to the directory the server runs in). A file is copied whole or not at all; a directory keeps modes, times and symlinks (never followed). Returns what was copied."}, t.copy)
	add(srv, &mcp.Tool{Name: "commit", Description: "Save a VM's whole running state (HEAD if vm is left out) as an immutable commit on disk: memory, processes and disk. " +
		"The VM pauses milliseconds and runs on. Start VMs from it with run-commit or branch. Returns the commit and its id."}, t.commit)
	add(srv, &mcp.Tool{Name: "run-commit", Description: "Start a VM from a commit (its id, a unique id prefix or a tag), running on from the instant it was made, and make it HEAD. Returns the VM and its id."}, t.runCommit)
	add(srv, readOnly("commits", "List the commits, newest first, with their ids, tags, source VM and sizes."), t.commits)
	add(srv, &mcp.Tool{Name: "pause", Description: "Stop a VM's CPUs (HEAD if vm is left out), keeping its memory, until resume. execute and cp in a paused VM are refused (code conflict)."}, t.pause)
	add(srv, &mcp.Tool{Name: "resume", Description: "Run a paused VM (HEAD if vm is left out) again from where it stopped."}, t.resume)
	add(srv, readOnly("tags", "List the tags: names for commits, usable wherever a commit is."), t.tags)
	add(srv, &mcp.Tool{Name: "sleep", Description: "Put a VM (HEAD if vm is left out) to sleep: its whole state goes to disk and its QEMU stops, so it uses no memory or CPU; it keeps its id. wake brings it back."}, t.sleep)
	add(srv, &mcp.Tool{Name: "wake", Description: "Wake a sleeping VM (HEAD if vm is left out): it runs on where it stopped, with the same id."}, t.wake)
	add(srv, &mcp.Tool{Name: "restore", Description: "Put a VM (HEAD if vm is left out) back to the state a commit holds, in place: memory, processes and disk as they were when it was made; " +
		"it keeps its id and alias. What changed since is lost.", Annotations: destructive()}, t.restore)
	t.registerCompare(srv)
	t.registerTunnel(srv)
}

func readOnly(name, desc string) *mcp.Tool {
	return &mcp.Tool{Name: name, Description: desc, Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}
}

func destructive() *mcp.ToolAnnotations {
	yes := true
	return &mcp.ToolAnnotations{DestructiveHint: &yes}
}

// VMArg names the VM of a tool that takes only that.
type VMArg struct {
	VM string `json:"vm,omitempty" jsonschema:"the VM: its alias, id or a unique id prefix (optional: HEAD when left out)"`
}

type StatusResult struct {
	// Head is the VM id HEAD names, when it is set.
	Head string     `json:"head,omitempty" jsonschema:"the id of the VM HEAD names, if set"`
	VMs  []StatusVM `json:"vms"`
}

// StatusVM is a VM as status shows it: as `vers status --format json` does.
type StatusVM struct {
	api.VM
	Head bool `json:"head" jsonschema:"whether HEAD names this VM"`
}

func (t *tools) status(ctx context.Context, a struct {
	VM string `json:"vm,omitempty" jsonschema:"show only this VM (optional: every VM when left out)"`
}) (StatusResult, error) {
	vms, head, err := t.v.Status(ctx, a.VM)
	if err != nil {
		return StatusResult{}, err
	}
	res := StatusResult{Head: head, VMs: make([]StatusVM, len(vms))}
	for i, v := range vms {
		res.VMs[i] = StatusVM{VM: v, Head: v.ID == head}
	}
	return res, nil
}

// RunArgs are run's: every field is optional, and one given overrides vers.toml.
type RunArgs struct {
	Alias   string `json:"alias,omitempty" jsonschema:"name for the new VM, unique on this host (optional)"`
	MemMiB  int    `json:"mem_size_mib,omitempty" jsonschema:"RAM in MiB (optional)"`
	VCPUs   int    `json:"vcpu_count,omitempty" jsonschema:"virtual CPUs (optional)"`
	FsMiB   int    `json:"fs_size_vm_mib,omitempty" jsonschema:"root filesystem size in MiB (optional)"`
	Kernel  string `json:"kernel,omitempty" jsonschema:"kernel image name (optional)"`
	Rootfs  string `json:"rootfs,omitempty" jsonschema:"root filesystem image name (optional)"`
	Network string `json:"network,omitempty" jsonschema:"isolated (outbound connections only) or none (optional)"`
}

type RunResult struct {
	VM api.VM `json:"vm"`
	// Head is the VM's id: run makes the new VM HEAD.
	Head string `json:"head" jsonschema:"the id HEAD names now: the new VM's"`
}

func (t *tools) run(ctx context.Context, a RunArgs) (RunResult, error) {
	if a.MemMiB < 0 || a.VCPUs < 0 || a.FsMiB < 0 {
		return RunResult{}, invalid("mem_size_mib, vcpu_count and fs_size_vm_mib must be positive (or left out for vers.toml's)")
	}
	if a.Network != "" && a.Network != "isolated" && a.Network != "none" {
		return RunResult{}, invalid("network %q: use isolated or none", a.Network)
	}
	v, err := t.v.Run(ctx, a)
	if err != nil {
		return RunResult{}, err
	}
	return RunResult{VM: v, Head: v.ID}, nil
}

// BranchArgs are branch's.
type BranchArgs struct {
	VM       string `json:"vm,omitempty" jsonschema:"the running VM to branch, or a commit or tag (optional: HEAD when left out)"`
	Alias    string `json:"alias,omitempty" jsonschema:"alias of the child; with count, the children are ALIAS-1 … ALIAS-N (optional)"`
	Count    int    `json:"count,omitempty" jsonschema:"number of children (optional, default 1)"`
	Checkout bool   `json:"checkout,omitempty" jsonschema:"move HEAD to the child; only with one child (optional)"`
}

// BranchResult is what a branch started: children of a VM (Parent set)
// or of a commit (FromCommit set).
type BranchResult struct {
	Parent     *api.VM     `json:"parent,omitempty" jsonschema:"the VM branched, when a VM was"`
	FromCommit *api.Commit `json:"from_commit,omitempty" jsonschema:"the commit branched, when a commit or tag was"`
	Children   []api.VM    `json:"children"`
	// PauseMillis is how long the parent's guest was stopped.
	PauseMillis      float64 `json:"pause_ms,omitempty"`
	FirstReadyMillis int64   `json:"first_ready_ms"`
	AllReadyMillis   int64   `json:"all_ready_ms"`
	Head             string  `json:"head,omitempty" jsonschema:"the id HEAD names now, when checkout moved it"`
}

func (t *tools) branch(ctx context.Context, a BranchArgs) (BranchResult, error) {
	switch {
	case a.Count < 0:
		return BranchResult{}, invalid("count must be at least 1")
	case a.Checkout && a.Count > 1:
		return BranchResult{}, invalid("checkout moves HEAD to one child; with count %d check one out afterwards with the checkout tool", a.Count)
	}
	if a.Count == 0 {
		a.Count = 1
	}
	return t.v.Branch(ctx, a)
}

type KillArgs struct {
	VM        string `json:"vm" jsonschema:"the VM to kill: its alias, id or a unique id prefix"`
	Recursive bool   `json:"recursive,omitempty" jsonschema:"also kill every VM branched from it (optional)"`
}

func (t *tools) kill(ctx context.Context, a KillArgs) (api.DeleteVMResponse, error) {
	if strings.TrimSpace(a.VM) == "" {
		return api.DeleteVMResponse{}, invalid("name the VM to kill (kill never defaults to HEAD)")
	}
	return t.v.Kill(ctx, a.VM, a.Recursive)
}

func (t *tools) checkout(ctx context.Context, a struct {
	VM string `json:"vm,omitempty" jsonschema:"the VM HEAD is to name (optional: left out, HEAD is only reported)"`
}) (api.Checkout, error) {
	v, err := t.v.Checkout(ctx, a.VM)
	return api.Checkout{Head: v}, err
}

func (t *tools) info(ctx context.Context, a VMArg) (api.VMInfo, error) {
	return t.v.Info(ctx, a.VM)
}

// CopyArgs are cp's.
type CopyArgs struct {
	Src       string `json:"src" jsonschema:"what to copy: VM:PATH (:PATH for HEAD) or a path on this host"`
	Dst       string `json:"dst" jsonschema:"where to: VM:PATH (:PATH for HEAD; a PATH ending in / keeps the file's name) or a path on this host (a directory keeps the name)"`
	Recursive bool   `json:"recursive,omitempty" jsonschema:"copy a directory and everything in it, into dst/NAME when dst is a directory (optional)"`
}

// CopyResult is what cp copied: a file's bytes, or with recursive the tree.
type CopyResult struct {
	Src            string          `json:"src"`
	Dst            string          `json:"dst"`
	Bytes          int64           `json:"bytes"`
	Tree           *api.TreeResult `json:"tree,omitempty" jsonschema:"with recursive: the directory made and what it holds"`
	DurationMillis int64           `json:"duration_ms,omitempty"`
}

func (t *tools) copy(ctx context.Context, a CopyArgs) (CopyResult, error) {
	if a.Src == "-" || a.Dst == "-" {
		return CopyResult{}, invalid(`"-" (standard input or output) is the protocol's here: name a file on this host`)
	}
	return t.v.Copy(ctx, a)
}

// CommitArgs are commit's.
type CommitArgs struct {
	VM      string `json:"vm,omitempty" jsonschema:"the VM to commit (optional: HEAD when left out)"`
	Tag     string `json:"tag,omitempty" jsonschema:"a tag naming the commit, usable wherever a commit is (optional)"`
	Message string `json:"message,omitempty" jsonschema:"what the commit holds (optional)"`
}

func (t *tools) commit(ctx context.Context, a CommitArgs) (api.CommitResponse, error) {
	return t.v.Commit(ctx, a)
}

type RunCommitResult struct {
	api.RunCommitResponse
	Head string `json:"head,omitempty" jsonschema:"the id HEAD names now: the new VM's (absent outside a project)"`
}

func (t *tools) runCommit(ctx context.Context, a struct {
	Commit string `json:"commit" jsonschema:"the commit: a tag, an id or a unique id prefix"`
	Alias  string `json:"alias,omitempty" jsonschema:"name for the new VM, unique on this host (optional)"`
}) (RunCommitResult, error) {
	if strings.TrimSpace(a.Commit) == "" {
		return RunCommitResult{}, invalid("name the commit: a tag, an id or a unique id prefix (the commits tool lists them)")
	}
	res, head, err := t.v.RunCommit(ctx, a.Commit, a.Alias)
	if err != nil {
		return RunCommitResult{}, err
	}
	out := RunCommitResult{RunCommitResponse: res}
	if head && len(res.VMs) > 0 {
		out.Head = res.VMs[0].ID
	}
	return out, nil
}

type CommitsResult struct {
	Commits []api.Commit `json:"commits"`
}

func (t *tools) commits(ctx context.Context, _ struct{}) (CommitsResult, error) {
	cs, err := t.v.Commits(ctx)
	return CommitsResult{Commits: cs}, err
}

func (t *tools) pause(ctx context.Context, a VMArg) (api.VM, error) {
	return t.v.Pause(ctx, a.VM)
}

func (t *tools) resume(ctx context.Context, a VMArg) (api.VM, error) {
	return t.v.Resume(ctx, a.VM)
}

type TagsResult struct {
	Tags []api.Tag `json:"tags"`
}

func (t *tools) tags(ctx context.Context, _ struct{}) (TagsResult, error) {
	tags, err := t.v.Tags(ctx)
	return TagsResult{Tags: tags}, err
}

func (t *tools) sleep(ctx context.Context, a VMArg) (api.VM, error) {
	return t.v.Sleep(ctx, a.VM)
}

func (t *tools) wake(ctx context.Context, a VMArg) (api.VM, error) {
	return t.v.Wake(ctx, a.VM)
}

func (t *tools) restore(ctx context.Context, a struct {
	VM     string `json:"vm,omitempty" jsonschema:"the VM to put back: its alias, id or a unique id prefix (optional: HEAD when left out)"`
	Commit string `json:"commit" jsonschema:"the commit: a tag, an id or a unique id prefix"`
}) (api.VM, error) {
	if strings.TrimSpace(a.Commit) == "" {
		return api.VM{}, invalid("name the commit: a tag, an id or a unique id prefix (the commits tool lists them)")
	}
	return t.v.Restore(ctx, a.VM, a.Commit)
}
