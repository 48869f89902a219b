package mcpserver

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"vers/api"
	"vers/internal/errdefs"
)

// fake is Verbs over a map of VMs. A VM named in failWith fails every
// verb with that error; exec, when set, is what execute runs.
type fake struct {
	mu       sync.Mutex
	vms      map[string]api.VM
	head     string
	failWith map[string]error
	exec     func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error)
	lastExec ExecRequest
	lastCopy CopyArgs
	lastRun  RunArgs

	lastCompare CompareArgs
	lastTimeout time.Duration
	lastDiff    api.FSDiffRequest
	tunnels     map[int]bool
}

var _ Verbs = (*fake)(nil)

func newFake(vms ...api.VM) *fake {
	f := &fake{vms: map[string]api.VM{}, failWith: map[string]error{}}
	for _, v := range vms {
		f.vms[v.ID] = v
	}
	return f
}

// get resolves ref as versd would (an alias or an id), or HEAD when empty.
func (f *fake) get(ref string) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ref == "" {
		if f.head == "" {
			return api.VM{}, fmt.Errorf("no VM named and HEAD is not set: %w", errdefs.ErrInvalid)
		}
		ref = f.head
	}
	if err := f.failWith[ref]; err != nil {
		return api.VM{}, err
	}
	for _, v := range f.vms {
		if v.ID == ref || v.Alias == ref {
			return v, nil
		}
	}
	return api.VM{}, fmt.Errorf("vm %s: %w", ref, errdefs.ErrNotFound)
}

func (f *fake) add(v api.VM) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[v.ID] = v
}

func (f *fake) Status(ctx context.Context, vm string) ([]api.VM, string, error) {
	if vm != "" {
		v, err := f.get(vm)
		return []api.VM{v}, f.head, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var vms []api.VM
	for _, v := range f.vms {
		vms = append(vms, v)
	}
	return vms, f.head, nil
}

func (f *fake) Run(ctx context.Context, a RunArgs) (api.VM, error) {
	f.lastRun = a
	v := api.VM{ID: fmt.Sprintf("vm%d", len(f.vms)+1), Alias: a.Alias, State: api.StateRunning, MemMiB: a.MemMiB, CreatedAt: time.Unix(0, 0).UTC()}
	f.add(v)
	f.head = v.ID
	return v, nil
}

func (f *fake) Execute(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (string, api.ExecControl, error) {
	f.lastExec = a
	v, err := f.get(a.VM)
	if err != nil {
		return "", api.ExecControl{}, err
	}
	if f.exec == nil {
		return v.ID, api.ExecControl{Type: "exit"}, nil
	}
	exit, err := f.exec(ctx, a, stdout, stderr)
	return v.ID, exit, err
}

func (f *fake) Branch(ctx context.Context, a BranchArgs) (BranchResult, error) {
	p, err := f.get(a.VM)
	if err != nil {
		return BranchResult{}, err
	}
	res := BranchResult{Parent: &p, PauseMillis: 1.5}
	for i := range a.Count {
		ch := api.VM{ID: fmt.Sprintf("%s-c%d", p.ID, i+1), ParentID: p.ID, State: api.StateRunning}
		f.add(ch)
		res.Children = append(res.Children, ch)
	}
	if a.Checkout {
		f.head = res.Children[0].ID
		res.Head = f.head
	}
	return res, nil
}

func (f *fake) Kill(ctx context.Context, vm string, recursive bool) (api.DeleteVMResponse, error) {
	v, err := f.get(vm)
	if err != nil {
		return api.DeleteVMResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.vms {
		if o.ParentID == v.ID && !recursive {
			return api.DeleteVMResponse{}, fmt.Errorf("vm %s has children; use recursive to kill them too: %w", v.ID, errdefs.ErrConflict)
		}
	}
	delete(f.vms, v.ID)
	return api.DeleteVMResponse{Deleted: []string{v.ID}}, nil
}

func (f *fake) Checkout(ctx context.Context, vm string) (*api.VM, error) {
	if vm == "" && f.head == "" {
		return nil, nil
	}
	v, err := f.get(vm)
	if err != nil {
		return nil, err
	}
	f.head = v.ID
	return &v, nil
}

func (f *fake) Info(ctx context.Context, vm string) (api.VMInfo, error) {
	v, err := f.get(vm)
	return api.VMInfo{VM: v, Accel: "tcg"}, err
}

func (f *fake) Copy(ctx context.Context, a CopyArgs) (CopyResult, error) {
	f.lastCopy = a
	res := CopyResult{Src: a.Src, Dst: a.Dst, Bytes: 42}
	if a.Recursive {
		res.Tree = &api.TreeResult{Path: a.Dst, Files: 2, Dirs: 1, Bytes: 42}
	}
	return res, nil
}

// Compare runs nothing: each VM named "prints" its alias, or fails.
func (f *fake) Compare(ctx context.Context, a CompareArgs, timeout time.Duration) (api.FanoutResult, error) {
	f.lastCompare, f.lastTimeout = a, timeout
	res := api.FanoutResult{Command: a.Command}
	for _, ref := range a.VMs {
		v, err := f.get(ref)
		if err != nil {
			return api.FanoutResult{}, err
		}
		res.Results = append(res.Results, api.FanoutRow{VM: api.VMRef{ID: v.ID, Alias: v.Alias}, Stdout: v.Alias + "\n"})
	}
	return res, nil
}

func (f *fake) Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error) {
	f.lastDiff = req
	a, err := f.get(req.A)
	if err != nil {
		return api.FSDiff{}, err
	}
	return api.FSDiff{A: api.VMRef{ID: a.ID}, Changes: []api.FSChange{{Path: "/etc/x", Kind: api.ChangeAdded}}, Method: api.DiffJournal}, nil
}

func (f *fake) Pick(ctx context.Context, a PickArgs) (api.PickResult, error) {
	v, err := f.get(a.VM)
	if err != nil {
		return api.PickResult{}, err
	}
	return api.PickResult{Kept: api.VMRef{ID: v.ID}, Killed: []api.VMRef{}, DryRun: a.DryRun}, nil
}

func (f *fake) Commit(ctx context.Context, a CommitArgs) (api.CommitResponse, error) {
	v, err := f.get(a.VM)
	if err != nil {
		return api.CommitResponse{}, err
	}
	var tags []string
	if a.Tag != "" {
		tags = []string{a.Tag}
	}
	return api.CommitResponse{Commit: api.Commit{ID: "c-" + v.ID, Tags: tags, Kind: api.CommitKindCommit, SourceVM: v.ID}}, nil
}

func (f *fake) RunCommit(ctx context.Context, commit, alias string) (api.RunCommitResponse, bool, error) {
	if commit != "c-vm1" {
		return api.RunCommitResponse{}, false, fmt.Errorf("commit %s: %w", commit, errdefs.ErrNotFound)
	}
	v := api.VM{ID: "from-commit", Alias: alias, State: api.StateRunning}
	f.add(v)
	f.head = v.ID
	return api.RunCommitResponse{Commit: api.Commit{ID: commit}, VMs: []api.VM{v}}, true, nil
}

func (f *fake) Commits(ctx context.Context) ([]api.Commit, error) {
	return []api.Commit{{ID: "c-vm1", Kind: api.CommitKindCommit}}, nil
}

func (f *fake) Pause(ctx context.Context, vm string) (api.VM, error) {
	v, err := f.get(vm)
	v.State = api.StatePaused
	return v, err
}

func (f *fake) Resume(ctx context.Context, vm string) (api.VM, error) {
	v, err := f.get(vm)
	v.State = api.StateRunning
	return v, err
}

func (f *fake) Tags(ctx context.Context) ([]api.Tag, error) {
	return []api.Tag{{Name: "base", Commit: "c-vm1"}}, nil
}

func (f *fake) Sleep(ctx context.Context, vm string) (api.VM, error) {
	v, err := f.get(vm)
	v.State = api.StateSleeping
	return v, err
}

func (f *fake) Wake(ctx context.Context, vm string) (api.VM, error) {
	v, err := f.get(vm)
	v.State = api.StateRunning
	return v, err
}

func (f *fake) Restore(ctx context.Context, vm, commit string) (api.VM, error) {
	v, err := f.get(vm)
	if err != nil {
		return v, err
	}
	if commit != "c-vm1" {
		return api.VM{}, fmt.Errorf("commit %s: %w", commit, errdefs.ErrNotFound)
	}
	v.LastCommit = commit
	return v, nil
}

func (f *fake) Tunnel(ctx context.Context, a TunnelArgs) (api.TunnelResult, error) {
	v, err := f.get(a.VM)
	if err != nil {
		return api.TunnelResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	port := 40000 + len(f.tunnels)
	if f.tunnels == nil {
		f.tunnels = map[int]bool{}
	}
	f.tunnels[port] = true
	return api.TunnelResult{Local: fmt.Sprintf("127.0.0.1:%d", port), Port: port, VMID: v.ID, RemoteHost: "127.0.0.1", RemotePort: a.RemotePort}, nil
}

func (f *fake) CloseTunnel(ctx context.Context, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tunnels[port] {
		return fmt.Errorf("no tunnel listens on port %d: %w", port, errdefs.ErrNotFound)
	}
	delete(f.tunnels, port)
	return nil
}
