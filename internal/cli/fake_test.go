package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/fanout"
	"vers/internal/project"
)

// fakeDaemon is a Daemon in memory: VMs by id, found by alias, id or id
// prefix as versd finds them, and a record of what was asked.
type fakeDaemon struct {
	mu  sync.Mutex
	vms []api.VM

	validateErr, createErr, deleteErr, branchErr, pauseErr error
	// validateErrBuilt is what validation says once images were built (a
	// disk smaller than the built root filesystem).
	validateErrBuilt error
	// exec runs an Exec; nil answers exit 0.
	exec func(ctx context.Context, ref string, req api.ExecRequest, s client.ExecIO) (api.ExecControl, error)
	// images are the known images, in order; a build makes one built.
	images []api.Image
	// build answers a BuildImage of an image that needs building; nil
	// writes one progress line and makes it built.
	build func(ctx context.Context, name string, progress io.Writer) error

	// hang, when set, makes ListVMs, GetVM and VMInfo wait for the end of
	// their context, after a send on it (see hold).
	hang chan struct{}
	// tunnel answers a Tunnel; nil refuses as a daemon without the route.
	tunnel func(ctx context.Context, ref, host string, port int) (client.TunnelConn, error)
	// acceptFiles: WriteFile takes the file (and drops it) instead of failing.
	acceptFiles bool

	validated []api.CreateVMRequest
	created   []api.CreateVMRequest
	deleted   []string
	branched  []string
	paused    []string // Pause and Resume calls: "pause id", "resume id"
	execs     []execCall
	builds    []buildCall

	heads []api.Head // SetHead calls, in order
	// files are what ReadFile reads, by "vm id:path".
	files map[string]string
	// diff answers Diff; diffs records the requests.
	diff  func(api.FSDiffRequest) (api.FSDiff, error)
	diffs []api.FSDiffRequest
	// deleteHook, when set, is asked before each DeleteVM; its error fails it.
	deleteHook func(id string) error
	// logins counts UILogin calls.
	logins int

	commitState // fake_commits_test.go
	treeState   // fake_tree_test.go
	eventState  // status_watch_test.go
}

type buildCall struct {
	Name  string
	Force bool
}

type execCall struct {
	Ref string
	Req api.ExecRequest
}

var _ Daemon = (*fakeDaemon)(nil)

func (d *fakeDaemon) find(ref string) (api.VM, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ref == "" {
		return api.VM{}, client.ErrNoRef
	}
	for _, v := range d.vms {
		if v.Alias == ref || strings.HasPrefix(v.ID, ref) {
			return v, nil
		}
	}
	return api.VM{}, &client.Error{Status: 404, Code: api.CodeNotFound, Message: fmt.Sprintf("no VM %q", ref)}
}

func (d *fakeDaemon) Health(context.Context) (api.Health, error) { return api.Health{PID: 1}, nil }

// hold, when hang is set, reports on hang that a call waits, and waits
// until ctx ends: a daemon that answers nothing until the command is
// cancelled.
func (d *fakeDaemon) hold(ctx context.Context) error {
	if d.hang == nil {
		return ctx.Err()
	}
	d.hang <- struct{}{}
	<-ctx.Done()
	return fmt.Errorf("fake: %w", ctx.Err())
}

func (d *fakeDaemon) ListVMs(ctx context.Context) ([]api.VM, error) {
	if err := d.hold(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]api.VM(nil), d.vms...), nil
}
func (d *fakeDaemon) GetVM(ctx context.Context, ref string) (api.VM, error) {
	if err := d.hold(ctx); err != nil {
		return api.VM{}, err
	}
	return d.find(ref)
}
func (d *fakeDaemon) VMInfo(ctx context.Context, ref string) (api.VMInfo, error) {
	if err := d.hold(ctx); err != nil {
		return api.VMInfo{}, err
	}
	v, err := d.find(ref)
	if err != nil {
		return api.VMInfo{}, err
	}
	info := api.VMInfo{VM: v, Children: []string{}, Accel: "tcg", Network: "isolated",
		Memory: api.MemoryUse{PSSBytes: 300 << 20}, Disk: api.DiskUse{Overlay: "/x/disk.qcow2", OverlayBytes: 1 << 20, ChainLength: 2}}
	for _, k := range d.vms {
		if k.ParentID == v.ID {
			info.Children = append(info.Children, k.ID)
		}
	}
	if len(info.Children) > 0 {
		info.LastBranch = &api.BranchRecord{Children: info.Children, PauseMillis: 12.5, FirstReadyMillis: 310, AllReadyMillis: 420, At: time.Now()}
	}
	return info, nil
}
func (d *fakeDaemon) ValidateVM(_ context.Context, req api.CreateVMRequest) error {
	d.validated = append(d.validated, req)
	if d.validateErrBuilt != nil && len(d.builds) > 0 {
		return d.validateErrBuilt
	}
	return d.validateErr
}
func (d *fakeDaemon) CreateVM(_ context.Context, req api.CreateVMRequest) (api.VM, error) {
	d.created = append(d.created, req)
	if d.createErr != nil {
		return api.VM{}, d.createErr
	}
	v := api.VM{ID: fmt.Sprintf("%08d-new", len(d.vms)), Alias: req.Alias, State: api.StateRunning}
	d.vms = append(d.vms, v)
	return v, nil
}
func (d *fakeDaemon) DeleteVM(_ context.Context, ref string, recursive bool) (api.DeleteVMResponse, error) {
	v, err := d.find(ref)
	if err != nil {
		return api.DeleteVMResponse{}, err
	}
	if d.deleteErr != nil {
		return api.DeleteVMResponse{}, d.deleteErr
	}
	if d.deleteHook != nil {
		if err := d.deleteHook(v.ID); err != nil {
			return api.DeleteVMResponse{}, err
		}
	}
	// As versd: a tree with -r, descendants first, and the rows go.
	d.mu.Lock()
	defer d.mu.Unlock()
	gone := []string{v.ID}
	if recursive {
		gone = nil
		for _, x := range fanout.Subtree(d.vms, v) {
			gone = append([]string{x.ID}, gone...)
		}
	}
	d.deleted = append(d.deleted, gone...)
	d.vms = slices.DeleteFunc(d.vms, func(x api.VM) bool { return slices.Contains(gone, x.ID) })
	return api.DeleteVMResponse{Deleted: gone}, nil
}
func (d *fakeDaemon) Branch(_ context.Context, ref string, req api.BranchRequest) (api.BranchResponse, error) {
	v, err := d.find(ref)
	if err != nil {
		return api.BranchResponse{}, err
	}
	if d.branchErr != nil {
		return api.BranchResponse{}, d.branchErr
	}
	d.branched = append(d.branched, v.ID)
	res := api.BranchResponse{Parent: v, PauseMillis: 12.5, FirstReadyMillis: 300, AllReadyMillis: 300}
	for i := 0; i < max(req.Count, 1); i++ {
		res.Children = append(res.Children, api.VM{ID: fmt.Sprintf("child%d-%s", i, v.ID), Alias: req.Alias, ParentID: v.ID})
	}
	return res, nil
}

// Pause and Resume set the VM's state as versd does.
func (d *fakeDaemon) Pause(_ context.Context, ref string) (api.VM, error) {
	return d.setState(ref, "pause", api.StatePaused, api.ReasonPaused)
}
func (d *fakeDaemon) Resume(_ context.Context, ref string) (api.VM, error) {
	return d.setState(ref, "resume", api.StateRunning, "")
}
func (d *fakeDaemon) setState(ref, op, state, reason string) (api.VM, error) {
	v, err := d.find(ref)
	if err != nil {
		return api.VM{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paused = append(d.paused, op+" "+v.ID)
	if d.pauseErr != nil {
		return api.VM{}, d.pauseErr
	}
	for i := range d.vms {
		if d.vms[i].ID == v.ID {
			d.vms[i].State, d.vms[i].StateReason = state, reason
			v = d.vms[i]
		}
	}
	return v, nil
}

// refusePaused answers a command in a paused VM as versd does.
func (d *fakeDaemon) refusePaused(ref string) error {
	v, err := d.find(ref)
	if err != nil {
		return err
	}
	if v.State == api.StatePaused {
		return &client.Error{Status: 409, Code: api.CodeConflict, Message: fmt.Sprintf("vm %s is paused; `vers resume %s` runs it again", label(v), label(v))}
	}
	return nil
}

func (d *fakeDaemon) Exec(ctx context.Context, ref string, req api.ExecRequest, s client.ExecIO) (api.ExecControl, error) {
	if err := d.refusePaused(ref); err != nil {
		return api.ExecControl{}, err
	}
	d.mu.Lock()
	d.execs = append(d.execs, execCall{ref, req})
	d.mu.Unlock()
	if d.exec != nil {
		return d.exec(ctx, ref, req, s)
	}
	return api.ExecControl{Type: "exit"}, nil
}
func (d *fakeDaemon) ReadFile(_ context.Context, ref, path string) (io.ReadCloser, os.FileMode, error) {
	if err := d.refusePaused(ref); err != nil {
		return nil, 0, err
	}
	if v, err := d.find(ref); err == nil {
		if body, ok := d.files[v.ID+":"+path]; ok {
			return io.NopCloser(strings.NewReader(body)), 0o644, nil
		}
	}
	return nil, 0, fmt.Errorf("fake: no files: %w", errdefs.ErrUnavailable)
}
func (d *fakeDaemon) WriteFile(_ context.Context, ref, _ string, _ os.FileMode, r io.Reader) error {
	if err := d.refusePaused(ref); err != nil {
		return err
	}
	if d.acceptFiles {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return fmt.Errorf("fake: no files: %w", errdefs.ErrUnavailable)
}

func (d *fakeDaemon) Tunnel(ctx context.Context, ref, host string, port int) (client.TunnelConn, error) {
	if d.tunnel == nil {
		return nil, &client.Error{Status: 404, Code: api.CodeUnavailable, Message: "no tunnels here"}
	}
	return d.tunnel(ctx, ref, host, port)
}

func (d *fakeDaemon) ListImages(context.Context) ([]api.Image, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]api.Image(nil), d.images...), nil
}

// BuildImage answers as versd does: an unknown name is invalid, a built
// image without force is answered as it is, others are built.
func (d *fakeDaemon) BuildImage(ctx context.Context, name string, force bool, progress io.Writer) (api.Image, error) {
	d.mu.Lock()
	d.builds = append(d.builds, buildCall{name, force})
	i := slices.IndexFunc(d.images, func(img api.Image) bool { return img.Name == name })
	d.mu.Unlock()
	if i < 0 {
		return api.Image{}, &client.Error{Status: 400, Code: api.CodeInvalid, Message: fmt.Sprintf("image %q: unknown image", name)}
	}
	if d.images[i].Status == api.ImageBuilt && !force {
		return d.images[i], nil
	}
	build := d.build
	if build == nil {
		build = func(_ context.Context, name string, progress io.Writer) error {
			_, err := fmt.Fprintf(progress, "[%s] building\n", name)
			return err
		}
	}
	if err := build(ctx, name, progress); err != nil {
		return api.Image{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.images[i].Status = api.ImageBuilt
	d.images[i].Built = time.Now()
	return d.images[i], nil
}

// env is a project directory, a factory whose client is the fake, and its
// output.
type env struct {
	t           *testing.T
	f           *Factory
	d           *fakeDaemon
	out, errOut *bytes.Buffer
	proj        *project.Project
}

const (
	headID  = "11111111-head"
	rootID  = "22222222-root"
	otherID = "33333333-other"
)

// newEnv makes a project whose HEAD is headID, on a daemon with three VMs.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	if _, err := project.Init(dir); err != nil {
		t.Fatal(err)
	}
	p, err := project.Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetHead(headID); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	d := &fakeDaemon{vms: []api.VM{
		{ID: headID, Alias: "head-vm", State: api.StateRunning, CreatedAt: now},
		{ID: rootID, Alias: "db-root", State: api.StateRunning, CreatedAt: now.Add(time.Second)},
		{ID: otherID, State: api.StateRunning, ParentID: rootID, CreatedAt: now.Add(2 * time.Second)},
	}, images: []api.Image{
		{Name: "default.bin", Kind: "kernel", Status: api.ImageBuilt, SizeMiB: 12, Built: now},
		{Name: "default", Kind: "rootfs", Status: api.ImageMissing, SizeMiB: 1024},
	}}
	var out, errOut bytes.Buffer
	f := &Factory{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut, WorkDir: dir, client: d}
	return &env{t: t, f: f, d: d, out: &out, errOut: &errOut, proj: p}
}

// run runs the vers command line args and returns its exit code.
func (e *env) run(args ...string) int {
	e.t.Helper()
	e.out.Reset()
	e.errOut.Reset()
	return Main(context.Background(), e.f, args)
}

func (e *env) head() string {
	e.t.Helper()
	h, err := e.proj.Head()
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

func (d *fakeDaemon) ListHeads(context.Context) ([]api.Head, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	latest := map[string]api.Head{}
	var dirs []string
	for _, h := range d.heads {
		if _, ok := latest[h.Dir]; !ok {
			dirs = append(dirs, h.Dir)
		}
		latest[h.Dir] = h
	}
	var out []api.Head
	for _, dir := range dirs {
		if h := latest[dir]; h.VMID != "" {
			out = append(out, h)
		}
	}
	return out, nil
}

func (d *fakeDaemon) SetHead(_ context.Context, dir, vm string) (api.Head, error) {
	h := api.Head{Dir: dir}
	if vm != "" {
		v, err := d.find(vm)
		if err != nil {
			return api.Head{}, err
		}
		h.VMID = v.ID
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.heads = append(d.heads, h)
	return h, nil
}

func (d *fakeDaemon) Diff(_ context.Context, req api.FSDiffRequest) (api.FSDiff, error) {
	d.mu.Lock()
	d.diffs = append(d.diffs, req)
	d.mu.Unlock()
	if d.diff == nil {
		return api.FSDiff{}, fmt.Errorf("fake: no diff: %w", errdefs.ErrUnavailable)
	}
	return d.diff(req)
}

func (d *fakeDaemon) UILogin(context.Context) (api.UILogin, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logins++
	return api.UILogin{
		URL:  fmt.Sprintf("http://127.0.0.1:4242/ui/login?t=token%d", d.logins),
		Addr: "127.0.0.1:4242", ExpiresAt: time.Now().Add(2 * time.Minute),
	}, nil
}
