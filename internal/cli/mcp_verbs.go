package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/fanout"
	"vers/internal/mcpserver"
)

// mcpVerbs are the MCP server's tools done as the commands do them, with
// the commands' own functions, in the project of f's working directory.
type mcpVerbs struct {
	f *Factory
	// mu makes the first call's start of versd (Factory.Client) one;
	// the client is then shared by every call.
	mu        sync.Mutex
	newClient clientFunc

	// life is the server's: tunnels live until it ends, or tunnel_close.
	life      context.Context
	tunnelsMu sync.Mutex
	tunnels   map[int]*openTunnel // by local port
}

var _ mcpserver.Verbs = (*mcpVerbs)(nil)

// newMCPVerbs serves f's project with the daemon newClient gives. What the
// commands' functions print goes to stderr, and standard input is empty:
// on stdio both are the protocol's.
func newMCPVerbs(f *Factory, newClient clientFunc) *mcpVerbs {
	quiet := *f
	quiet.In, quiet.Out = strings.NewReader(""), f.ErrOut
	return &mcpVerbs{f: &quiet, newClient: newClient, life: context.Background(), tunnels: map[int]*openTunnel{}}
}

func (m *mcpVerbs) Tunnel(ctx context.Context, a mcpserver.TunnelArgs) (api.TunnelResult, error) {
	ref, err := m.f.headRef(a.VM)
	if err != nil {
		return api.TunnelResult{}, err
	}
	c, err := m.client(ctx)
	if err != nil {
		return api.TunnelResult{}, err
	}
	v, err := c.GetVM(ctx, ref)
	if err != nil {
		return api.TunnelResult{}, headGone(ref, a.VM == "", err)
	}
	if v.State != api.StateRunning {
		return api.TunnelResult{}, fmt.Errorf("vm %s is %s; a tunnel needs it running%s: %w", label(v), v.State, howToRun(v), errdefs.ErrConflict)
	}
	spec := tunnelSpec{Local: a.LocalPort, Host: a.Host, Remote: a.RemotePort}
	t := &tunnel{c: c, vm: v, spec: spec, errOut: m.f.ErrOut}
	ot, err := t.start(m.life)
	if err != nil {
		return api.TunnelResult{}, err
	}
	port := ot.Local.Port
	m.tunnelsMu.Lock()
	m.tunnels[port] = ot
	m.tunnelsMu.Unlock()
	go func() { // one that closes by itself (its VM went away) is forgotten
		<-ot.Done()
		m.tunnelsMu.Lock()
		if m.tunnels[port] == ot {
			delete(m.tunnels, port)
		}
		m.tunnelsMu.Unlock()
	}()
	host := a.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return api.TunnelResult{Local: ot.Local.String(), Port: port, VMID: v.ID, Alias: v.Alias, RemoteHost: host, RemotePort: a.RemotePort}, nil
}

func (m *mcpVerbs) CloseTunnel(ctx context.Context, port int) error {
	m.tunnelsMu.Lock()
	ot := m.tunnels[port]
	delete(m.tunnels, port)
	m.tunnelsMu.Unlock()
	if ot == nil {
		return fmt.Errorf("no tunnel listens on 127.0.0.1:%d: %w", port, errdefs.ErrNotFound)
	}
	ot.Close()
	return nil
}

// closeTunnels closes every tunnel, at the server's end.
func (m *mcpVerbs) closeTunnels() {
	m.tunnelsMu.Lock()
	list := make([]*openTunnel, 0, len(m.tunnels))
	for _, ot := range m.tunnels {
		list = append(list, ot)
	}
	m.tunnels = map[int]*openTunnel{}
	m.tunnelsMu.Unlock()
	for _, ot := range list {
		ot.Close()
	}
}

func (m *mcpVerbs) client(ctx context.Context) (Daemon, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newClient(ctx)
}

func (m *mcpVerbs) head() string {
	p, err := m.f.Project()
	if err != nil {
		return ""
	}
	head, _ := p.Head()
	return head
}

func (m *mcpVerbs) Status(ctx context.Context, vm string) ([]api.VM, string, error) {
	c, err := m.client(ctx)
	if err != nil {
		return nil, "", err
	}
	if vm != "" {
		v, err := c.GetVM(ctx, vm)
		return []api.VM{v}, m.head(), err
	}
	vms, err := c.ListVMs(ctx)
	return vms, m.head(), err
}

func (m *mcpVerbs) Run(ctx context.Context, a mcpserver.RunArgs) (api.VM, error) {
	p, err := m.f.Project()
	if err != nil {
		return api.VM{}, err
	}
	o := &RunOptions{Alias: a.Alias, MemMiB: a.MemMiB, VCPUs: a.VCPUs, FsMiB: a.FsMiB, Kernel: a.Kernel, Rootfs: a.Rootfs, Network: a.Network,
		set: map[string]bool{"mem-size-mib": a.MemMiB != 0, "vcpu-count": a.VCPUs != 0, "fs-size-vm-mib": a.FsMiB != 0,
			"kernel": a.Kernel != "", "rootfs": a.Rootfs != "", "network": a.Network != ""}}
	c, err := m.client(ctx)
	if err != nil {
		return api.VM{}, err
	}
	return bootVM(ctx, c, p, o.createRequest(p.Config), m.f.ErrOut, nil)
}

func (m *mcpVerbs) Execute(ctx context.Context, a mcpserver.ExecRequest, stdout, stderr io.Writer) (string, api.ExecControl, error) {
	ref, c, err := m.f.target(ctx, m.client, a.VM)
	if err != nil {
		return "", api.ExecControl{}, err
	}
	v, err := c.GetVM(ctx, ref)
	if err != nil {
		return "", api.ExecControl{}, headGone(ref, a.VM == "", err)
	}
	if a.Resume {
		if err := resumeFirst(ctx, c, v.ID); err != nil {
			return v.ID, api.ExecControl{}, err
		}
	}
	exit, err := execIn(ctx, c, v.ID, a.VM == "", api.ExecRequest{Command: a.Command, Env: a.Env, Dir: a.Dir}, a.Timeout,
		client.ExecIO{Stdout: stdout, Stderr: stderr})
	if errors.Is(err, errdefs.ErrConflict) && userPaused(v) {
		// execIn's hint names the CLI's flag.
		return v.ID, exit, fmt.Errorf("vm %s is paused; call resume, or execute with resume: true: %w", label(v), errdefs.ErrConflict)
	}
	return v.ID, exit, err
}

func (m *mcpVerbs) Branch(ctx context.Context, a mcpserver.BranchArgs) (mcpserver.BranchResult, error) {
	o := &BranchOptions{f: m.f, Client: m.client, VM: a.VM, Alias: a.Alias, Checkout: a.Checkout, Count: a.Count}
	b, err := o.branch(ctx)
	if err != nil {
		return mcpserver.BranchResult{}, err
	}
	var res mcpserver.BranchResult
	if b.Commit != nil {
		res = mcpserver.BranchResult{FromCommit: &b.Commit.Commit, Children: b.Commit.VMs,
			FirstReadyMillis: b.Commit.FirstReadyMillis, AllReadyMillis: b.Commit.AllReadyMillis}
	} else {
		res = mcpserver.BranchResult{Parent: &b.VM.Parent, Children: b.VM.Children, PauseMillis: b.VM.PauseMillis,
			FirstReadyMillis: b.VM.FirstReadyMillis, AllReadyMillis: b.VM.AllReadyMillis}
	}
	if a.Checkout && len(res.Children) > 0 {
		res.Head = res.Children[0].ID
	}
	return res, nil
}

func (m *mcpVerbs) Kill(ctx context.Context, vm string, recursive bool) (api.DeleteVMResponse, error) {
	c, err := m.client(ctx)
	if err != nil {
		return api.DeleteVMResponse{}, err
	}
	_, res, err := killVM(ctx, m.f, c, vm, recursive)
	return res, err
}

func (m *mcpVerbs) Checkout(ctx context.Context, vm string) (*api.VM, error) {
	p, err := m.f.Project()
	if err != nil {
		return nil, err
	}
	c, err := m.client(ctx)
	if err != nil {
		return nil, err
	}
	if vm == "" {
		return headVM(ctx, p, c)
	}
	v, err := checkoutVM(ctx, p, c, vm)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func (m *mcpVerbs) Info(ctx context.Context, vm string) (api.VMInfo, error) {
	ref, c, err := m.f.target(ctx, m.client, vm)
	if err != nil {
		return api.VMInfo{}, err
	}
	info, err := c.VMInfo(ctx, ref)
	return info, headGone(ref, vm == "", err)
}

func (m *mcpVerbs) Copy(ctx context.Context, a mcpserver.CopyArgs) (mcpserver.CopyResult, error) {
	o := &CopyOptions{f: m.f, Src: a.Src, Dst: a.Dst, Recursive: a.Recursive, Format: "json"}
	// A relative host path is the server's directory's, --dir's.
	if _, _, remote := splitRemote(o.Src); !remote && !filepath.IsAbs(o.Src) {
		o.Src = filepath.Join(m.f.WorkDir, o.Src)
	} else if _, _, remote := splitRemote(o.Dst); !remote && !filepath.IsAbs(o.Dst) {
		o.Dst = filepath.Join(m.f.WorkDir, o.Dst)
	}
	if err := o.check(); err != nil {
		return mcpserver.CopyResult{}, err
	}
	c, err := m.client(ctx)
	if err != nil {
		return mcpserver.CopyResult{}, err
	}
	if a.Recursive {
		svm, spath, sremote := splitRemote(o.Src)
		dvm, dpath, _ := splitRemote(o.Dst)
		res, err := copyTreeResult(ctx, o, c, sremote, svm, spath, dvm, dpath)
		if err != nil {
			return mcpserver.CopyResult{}, err
		}
		return mcpserver.CopyResult{Src: a.Src, Dst: a.Dst, Bytes: res.Bytes, Tree: &res.TreeResult, DurationMillis: res.DurationMillis}, nil
	}
	n, err := copyFile(ctx, o, c)
	return mcpserver.CopyResult{Src: a.Src, Dst: a.Dst, Bytes: n}, err
}

func (m *mcpVerbs) Compare(ctx context.Context, a mcpserver.CompareArgs, timeout time.Duration) (api.FanoutResult, error) {
	c, err := m.client(ctx)
	if err != nil {
		return api.FanoutResult{}, err
	}
	spec := fanSpec{fanout.Spec{On: a.VMs, Tree: a.Tree, Children: a.Children}}
	if err := spec.check(); err != nil {
		return api.FanoutResult{}, err
	}
	vms, err := spec.targets(ctx, c)
	if err != nil {
		return api.FanoutResult{}, err
	}
	run := fanRun{Timeout: timeout, MaxOutput: a.MaxOutputBytes,
		Req: api.ExecRequest{Command: a.Command, TimeoutMS: timeoutMillis(timeout)}}
	return run.run(ctx, c, vms), context.Cause(ctx)
}

func (m *mcpVerbs) Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error) {
	c, err := m.client(ctx)
	if err != nil {
		return api.FSDiff{}, err
	}
	return c.Diff(ctx, req)
}

func (m *mcpVerbs) Pick(ctx context.Context, a mcpserver.PickArgs) (api.PickResult, error) {
	c, err := m.client(ctx)
	if err != nil {
		return api.PickResult{}, err
	}
	res, _, err := pickVM(ctx, m.f, c, a.VM, a.DryRun, a.Force)
	return res, err
}

func (m *mcpVerbs) Commit(ctx context.Context, a mcpserver.CommitArgs) (api.CommitResponse, error) {
	ref, c, err := m.f.target(ctx, m.client, a.VM)
	if err != nil {
		return api.CommitResponse{}, err
	}
	res, err := c.Commit(ctx, ref, api.CommitRequest{Tag: a.Tag, Message: a.Message})
	return res, headGone(ref, a.VM == "", err)
}

func (m *mcpVerbs) RunCommit(ctx context.Context, commit, alias string) (api.RunCommitResponse, bool, error) {
	c, err := m.client(ctx)
	if err != nil {
		return api.RunCommitResponse{}, false, err
	}
	return runFromCommit(ctx, m.f, c, commit, alias)
}

func (m *mcpVerbs) Commits(ctx context.Context) ([]api.Commit, error) {
	c, err := m.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.ListCommits(ctx)
}

func (m *mcpVerbs) Pause(ctx context.Context, vm string) (api.VM, error) {
	_, v, err := (&PauseOptions{f: m.f, Client: m.client, VM: vm}).pause(ctx)
	return v, err
}

func (m *mcpVerbs) Resume(ctx context.Context, vm string) (api.VM, error) {
	_, v, err := (&PauseOptions{f: m.f, Client: m.client, VM: vm, Resume: true}).pause(ctx)
	return v, err
}

func (m *mcpVerbs) Tags(ctx context.Context) ([]api.Tag, error) {
	c, err := m.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.ListTags(ctx)
}

func (m *mcpVerbs) Sleep(ctx context.Context, vm string) (api.VM, error) {
	return (&VMVerbOptions{f: m.f, Client: m.client, Verb: "sleep", VM: vm}).act(ctx)
}

func (m *mcpVerbs) Wake(ctx context.Context, vm string) (api.VM, error) {
	return (&VMVerbOptions{f: m.f, Client: m.client, Verb: "wake", VM: vm}).act(ctx)
}

func (m *mcpVerbs) Restore(ctx context.Context, vm, commit string) (api.VM, error) {
	return (&VMVerbOptions{f: m.f, Client: m.client, Verb: "restore", VM: vm, Commit: commit}).act(ctx)
}
