package cli

import (
	"context"
	"io"
	"os"

	"vers/api"
	"vers/client"
)

// Daemon is what the commands use of versd. *client.Client implements it;
// the commands' unit tests give a fake.
type Daemon interface {
	Health(ctx context.Context) (api.Health, error)
	ListVMs(ctx context.Context) ([]api.VM, error)
	GetVM(ctx context.Context, ref string) (api.VM, error)
	VMInfo(ctx context.Context, ref string) (api.VMInfo, error)
	ValidateVM(ctx context.Context, req api.CreateVMRequest) error
	CreateVM(ctx context.Context, req api.CreateVMRequest) (api.VM, error)
	DeleteVM(ctx context.Context, ref string, recursive bool) (api.DeleteVMResponse, error)
	Branch(ctx context.Context, ref string, req api.BranchRequest) (api.BranchResponse, error)
	Pause(ctx context.Context, ref string) (api.VM, error)
	Resume(ctx context.Context, ref string) (api.VM, error)
	Exec(ctx context.Context, ref string, req api.ExecRequest, streams client.ExecIO) (api.ExecControl, error)
	ReadFile(ctx context.Context, ref, path string) (io.ReadCloser, os.FileMode, error)
	WriteFile(ctx context.Context, ref, path string, mode os.FileMode, r io.Reader) error
	// ReadTree and WriteTree carry a directory as a tar archive (vers cp -r).
	ReadTree(ctx context.Context, ref, path string) (io.ReadCloser, error)
	WriteTree(ctx context.Context, ref, path, name string, r io.Reader) (api.TreeResult, error)
	ListImages(ctx context.Context) ([]api.Image, error)
	// BuildImage writes the build's progress lines to progress.
	BuildImage(ctx context.Context, name string, force bool, progress io.Writer) (api.Image, error)

	Commit(ctx context.Context, ref string, req api.CommitRequest) (api.CommitResponse, error)
	ListCommits(ctx context.Context) ([]api.Commit, error)
	GetCommit(ctx context.Context, ref string) (api.Commit, error)
	CommitHistory(ctx context.Context, ref string) ([]api.Commit, error)
	RemoveCommits(ctx context.Context, refs []string) ([]string, error)
	GCCommits(ctx context.Context, req api.GCRequest) (api.GCResponse, error)
	CommitUsage(ctx context.Context) (api.Usage, error)
	// ExportCommit writes the whole archive to w, or fails.
	ExportCommit(ctx context.Context, ref string, w io.Writer) error
	ImportCommit(ctx context.Context, r io.Reader) (api.ImportResponse, error)
	RunCommit(ctx context.Context, ref string, req api.RunCommitRequest) (api.RunCommitResponse, error)
	ListTags(ctx context.Context) ([]api.Tag, error)
	SetTag(ctx context.Context, name string, req api.TagRequest) (api.Tag, error)
	RemoveTag(ctx context.Context, name string) error
	Sleep(ctx context.Context, ref string) (api.VM, error)
	Wake(ctx context.Context, ref string) (api.VM, error)
	Restore(ctx context.Context, ref string, req api.RestoreRequest) (api.VM, error)
	// Tunnel connects VM ref to host:port (client.Tunnel).
	Tunnel(ctx context.Context, ref, host string, port int) (client.TunnelConn, error)
	// Events calls fn with each event of GET /v1/events (client.Events).
	Events(ctx context.Context, fn func(api.Event) error) error
	ListHeads(ctx context.Context) ([]api.Head, error)
	SetHead(ctx context.Context, dir, vm string) (api.Head, error)
	Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error)
	// UILogin is a one-time login URL of the web UI (vers ui).
	UILogin(ctx context.Context) (api.UILogin, error)
}

var _ Daemon = (*client.Client)(nil)
