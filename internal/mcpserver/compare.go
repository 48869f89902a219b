package mcpserver

import (
	"context"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
)

// The tools that compare branches and keep the winner.
func (t *tools) registerCompare(srv *mcp.Server) {
	add(srv, readOnly("compare", "Run one shell command (bash -c) in several VMs at once — those named in vms, or tree (a VM and all its descendants), or children (a VM's children) — "+
		"and return each VM's exit_code, stdout, stderr and duration, and the VMs grouped by identical result: which branches agree. "+
		"A VM that cannot run it (dead, paused) is a row with its error. exit_code is the highest of the rows'."), t.compare)
	add(srv, readOnly("diff", "Say what differs between the filesystems of two VMs (a and b: running or paused VMs, or commits or tags) under paths (default /, without /proc /sys /dev /run /tmp): "+
		"each path added (in b only), removed (in a only) or changed (content, mode, owner, type, symlink target). content adds a unified diff of each changed text file. "+
		"Two VMs with a common past are compared on what either changed since they parted, which is fast."), t.diff)
	add(srv, &mcp.Tool{Name: "pick", Description: "Keep the best of N: keep vm and kill every other child of its parent with their descendants; the parent stays. " +
		"Refused (code conflict) when one of them is the HEAD of another project directory, unless force. dry_run lists what would go.", Annotations: destructive()}, t.pick)
}

// CompareArgs are compare's.
type CompareArgs struct {
	Command        string   `json:"command" jsonschema:"the command, run with bash -c in each VM"`
	VMs            []string `json:"vms,omitempty" jsonschema:"the VMs to run it in (aliases, ids or id prefixes); or give tree or children"`
	Tree           string   `json:"tree,omitempty" jsonschema:"run it in this VM and all its descendants (optional)"`
	Children       string   `json:"children,omitempty" jsonschema:"run it in this VM's children (optional)"`
	TimeoutSeconds float64  `json:"timeout_seconds,omitempty" jsonschema:"kill the command in a VM after this long (optional, default 600, at most 3600)"`
	MaxOutputBytes int64    `json:"max_output_bytes,omitempty" jsonschema:"bytes of each stream kept per VM (optional, default 65536, at most 524288); the rest is counted in dropped_bytes"`
}

func (t *tools) compare(ctx context.Context, a CompareArgs) (api.FanoutResult, error) {
	n := 0
	for _, set := range []bool{len(a.VMs) > 0, a.Tree != "", a.Children != ""} {
		if set {
			n++
		}
	}
	switch {
	case strings.TrimSpace(a.Command) == "":
		return api.FanoutResult{}, invalid("give the command to run")
	case n != 1:
		return api.FanoutResult{}, invalid("give one of vms, tree and children")
	case a.TimeoutSeconds < 0 || a.TimeoutSeconds > maxTimeout.Seconds():
		return api.FanoutResult{}, invalid("timeout_seconds is between 0 and %d", int(maxTimeout.Seconds()))
	case a.MaxOutputBytes < 0 || a.MaxOutputBytes > maxOutput:
		return api.FanoutResult{}, invalid("max_output_bytes is between 0 and %d", maxOutput)
	}
	timeout := defaultTimeout
	if a.TimeoutSeconds > 0 {
		timeout = time.Duration(a.TimeoutSeconds * float64(time.Second))
	}
	if a.MaxOutputBytes == 0 {
		a.MaxOutputBytes = defaultOutput
	}
	return t.v.Compare(ctx, a, timeout)
}

// DiffArgs are diff's.
type DiffArgs struct {
	A        string   `json:"a" jsonschema:"the first VM (or commit or tag)"`
	B        string   `json:"b" jsonschema:"the second VM (or commit or tag)"`
	Paths    []string `json:"paths,omitempty" jsonschema:"absolute paths in the VMs to compare under (optional, default /)"`
	Include  []string `json:"include,omitempty" jsonschema:"paths left out by default to compare too (optional)"`
	Exclude  []string `json:"exclude,omitempty" jsonschema:"paths to leave out (optional)"`
	Checksum bool     `json:"checksum,omitempty" jsonschema:"hash every file instead of trusting unchanged metadata; slow (optional)"`
	Content  bool     `json:"content,omitempty" jsonschema:"add a unified diff of each changed text file (optional)"`
}

func (t *tools) diff(ctx context.Context, a DiffArgs) (api.FSDiff, error) {
	if strings.TrimSpace(a.A) == "" || strings.TrimSpace(a.B) == "" {
		return api.FSDiff{}, invalid("name the two VMs (or commits) to compare: a and b")
	}
	return t.v.Diff(ctx, api.FSDiffRequest{A: a.A, B: a.B, Paths: a.Paths, Include: a.Include, Exclude: a.Exclude, Checksum: a.Checksum, Content: a.Content})
}

// PickArgs are pick's.
type PickArgs struct {
	VM     string `json:"vm" jsonschema:"the VM to keep"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"only list what would be killed (optional)"`
	Force  bool   `json:"force,omitempty" jsonschema:"kill siblings that are the HEAD of another project directory too (optional)"`
}

func (t *tools) pick(ctx context.Context, a PickArgs) (api.PickResult, error) {
	if strings.TrimSpace(a.VM) == "" {
		return api.PickResult{}, invalid("name the VM to keep")
	}
	return t.v.Pick(ctx, a)
}

// The tunnel tools: a tunnel lives in the server's process, until
// tunnel_close, its VM going away, or the server's end.
func (t *tools) registerTunnel(srv *mcp.Server) {
	add(srv, &mcp.Tool{Name: "tunnel", Description: "Forward a TCP port on this host's loopback to a port in a VM (HEAD if vm is left out), as ssh -L: " +
		"each connection to 127.0.0.1:port (the port returned; local_port 0 or left out takes a free one) reaches remote_port on the VM's own loopback, or on host as the VM reaches it. " +
		"The tunnel stays until tunnel_close, the VM going away, or the end of this server."}, t.tunnel)
	add(srv, &mcp.Tool{Name: "tunnel_close", Description: "Close the tunnel listening on port (as tunnel returned it)."}, t.tunnelClose)
}

// TunnelArgs are tunnel's.
type TunnelArgs struct {
	VM         string `json:"vm,omitempty" jsonschema:"the VM (optional: HEAD when left out)"`
	RemotePort int    `json:"remote_port" jsonschema:"the TCP port to reach in the VM"`
	Host       string `json:"host,omitempty" jsonschema:"the host to reach, as the VM reaches it (optional: the VM's own loopback)"`
	LocalPort  int    `json:"local_port,omitempty" jsonschema:"the port on this host's 127.0.0.1 (optional: a free one)"`
}

func (t *tools) tunnel(ctx context.Context, a TunnelArgs) (api.TunnelResult, error) {
	switch {
	case a.RemotePort < 1 || a.RemotePort > 65535:
		return api.TunnelResult{}, invalid("remote_port is between 1 and 65535")
	case a.LocalPort < 0 || a.LocalPort > 65535:
		return api.TunnelResult{}, invalid("local_port is between 0 (a free one) and 65535")
	}
	return t.v.Tunnel(ctx, a)
}

// TunnelCloseResult says which tunnel was closed.
type TunnelCloseResult struct {
	Closed int `json:"closed" jsonschema:"the local port of the tunnel closed"`
}

func (t *tools) tunnelClose(ctx context.Context, a struct {
	Port int `json:"port" jsonschema:"the local port of the tunnel, as tunnel returned it"`
}) (TunnelCloseResult, error) {
	if err := t.v.CloseTunnel(ctx, a.Port); err != nil {
		return TunnelCloseResult{}, err
	}
	return TunnelCloseResult{Closed: a.Port}, nil
}
