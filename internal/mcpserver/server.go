// Package mcpserver serves vers's verbs as the tools of a Model Context
// Protocol server (`vers mcp serve`), for agents and for clients that vers
// did not write. It sees vers only through Verbs, which the CLI implements
// with its commands' own logic; it never prints anything, since on stdio
// standard output is the protocol.
//
// A verb that fails (no such VM, bad input, a timeout) answers a tool
// result with isError set, whose one text content is the object that
// `vers --format json` prints on failure: {"error":{"code":"not_found",
// "message":"…"}}, with the CLI's codes. Arguments that do not match a
// tool's input schema, which the SDK checks, answer the same way with the
// code invalid. Only what is no tool call at all (an unknown tool, a
// malformed request) is a JSON-RPC error.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
	"vers/internal/errdefs"
)

// Verbs is what the tools do, each as the CLI's command of that name does
// it in the directory the server was started in: a VM left empty is HEAD
// of the project there, and run, run-commit, checkout and branch with
// checkout move that HEAD.
type Verbs interface {
	// Status is the VM vm, or every VM when vm is empty, and the VM id HEAD
	// names ("" when none).
	Status(ctx context.Context, vm string) (vms []api.VM, head string, err error)
	Run(ctx context.Context, a RunArgs) (api.VM, error)
	// Execute runs a.Command in a.VM until it exits, writing its output
	// to stdout and stderr as it comes, and ends it when ctx ends. vmID is
	// the id of the VM it ran in.
	Execute(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (vmID string, exit api.ExecControl, err error)
	Branch(ctx context.Context, a BranchArgs) (BranchResult, error)
	Kill(ctx context.Context, vm string, recursive bool) (api.DeleteVMResponse, error)
	// Checkout points HEAD at vm and returns it; with vm empty it returns
	// the VM HEAD names, or nil.
	Checkout(ctx context.Context, vm string) (*api.VM, error)
	Info(ctx context.Context, vm string) (api.VMInfo, error)
	Copy(ctx context.Context, a CopyArgs) (CopyResult, error)
	Commit(ctx context.Context, a CommitArgs) (api.CommitResponse, error)
	// RunCommit starts a VM from a commit; head says it became HEAD (there
	// is a project).
	RunCommit(ctx context.Context, commit, alias string) (res api.RunCommitResponse, head bool, err error)
	Commits(ctx context.Context) ([]api.Commit, error)
	Tags(ctx context.Context) ([]api.Tag, error)
	Pause(ctx context.Context, vm string) (api.VM, error)
	Resume(ctx context.Context, vm string) (api.VM, error)
	Sleep(ctx context.Context, vm string) (api.VM, error)
	Wake(ctx context.Context, vm string) (api.VM, error)
	// Restore puts vm back to the state of commit, in place.
	Restore(ctx context.Context, vm, commit string) (api.VM, error)
	// Compare runs a.Command in the VMs a names, at once, each for at most
	// timeout, keeping a.MaxOutputBytes of each stream.
	Compare(ctx context.Context, a CompareArgs, timeout time.Duration) (api.FanoutResult, error)
	Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error)
	Pick(ctx context.Context, a PickArgs) (api.PickResult, error)
	// Tunnel opens a tunnel that outlives the call; CloseTunnel closes
	// the one listening on port (ErrNotFound when there is none).
	Tunnel(ctx context.Context, a TunnelArgs) (api.TunnelResult, error)
	CloseTunnel(ctx context.Context, port int) error
}

// Options are a server's settings; the zero value is usable.
type Options struct {
	// Version is the server's version, as initialize reports it.
	Version string
	// Code classifies a verb's error into the code of its result; the CLI
	// gives its own, so that both say the same. errdefs.Code by default.
	Code func(error) string
	// Message is an error's text for the result; errdefs.Message by default.
	Message func(error) string
}

// New is an MCP server whose tools are v's verbs. One server may serve
// any number of sessions at once.
func New(v Verbs, opts Options) *mcp.Server {
	if opts.Code == nil {
		opts.Code = errdefs.Code
	}
	if opts.Message == nil {
		opts.Message = errdefs.Message
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "vers", Title: "vers: VMs that branch while they run", Version: opts.Version},
		&mcp.ServerOptions{Instructions: instructions})
	srv.AddReceivingMiddleware(errorResults(opts))
	(&tools{v: v}).register(srv)
	return srv
}

const instructions = `vers runs QEMU virtual machines on this host and branches them while they run: a branch's children start from the parent's exact memory, processes and disk. ` +
	`Tools act as the vers CLI does in the directory this server acts in (where it was started, or its --dir): a VM argument left out means HEAD, the current VM of that project; run, run-commit, checkout and branch with checkout move HEAD. ` +
	`A VM is named by its alias, its id, or a unique id prefix. Results carry VM ids; a failed call has isError set and the text {"error":{"code":"...","message":"..."}} with the codes invalid, not_found, conflict, timeout, cancelled, no_space, unavailable, internal.`

// toolError is what a tool handler fails with: the verb's error, and what
// the result shows besides it (the output a timed-out command gave).
type toolError struct {
	err   error
	extra []mcp.Content
}

func (e *toolError) Error() string { return e.err.Error() }
func (e *toolError) Unwrap() error { return e.err }

// errorResults gives every failed tool call the content described in the
// package comment. The SDK puts a failed handler's error, or its own
// complaint about the arguments, in the result; this replaces the text.
func errorResults(opts Options) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			res, err := next(ctx, method, req)
			r, ok := res.(*mcp.CallToolResult)
			if err != nil || !ok || !r.IsError {
				return res, err
			}
			r.Content = errorContent(r, opts)
			return r, nil
		}
	}
}

func errorContent(r *mcp.CallToolResult, opts Options) []mcp.Content {
	e := api.Error{Code: api.CodeInvalid}
	var te *toolError
	switch err := r.GetError(); {
	case errors.As(err, &te):
		e.Code, e.Message = opts.Code(te.err), opts.Message(te.err)
	case err != nil:
		// Not a handler's: the SDK refused the arguments.
		e.Message = err.Error() + "; the tool's input schema (tools/list) says what it takes"
	default:
		return r.Content
	}
	b, _ := json.Marshal(api.CLIError{Error: e})
	content := []mcp.Content{&mcp.TextContent{Text: string(b)}}
	if te != nil {
		content = append(content, te.extra...)
	}
	return content
}

// add adds a tool whose handler takes its arguments and returns its result.
func add[In, Out any](srv *mcp.Server, t *mcp.Tool, h func(context.Context, In) (Out, error)) {
	mcp.AddTool(srv, t, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		defer keepAlive(ctx, req, t.Name)()
		out, err := h(ctx, in)
		if err != nil {
			var te *toolError
			if !errors.As(err, &te) {
				err = &toolError{err: err}
			}
			return nil, out, err
		}
		return nil, out, nil
	})
}

// progressEvery is how often a call that asked for progress (it gave a
// progress token) hears that it still runs: clients give up on calls that
// say nothing for long, and a boot or a command can take minutes.
var progressEvery = 10 * time.Second

// keepAlive sends req's client a progress notification every
// progressEvery until the returned stop is called, if req asked for them.
func keepAlive(ctx context.Context, req *mcp.CallToolRequest, tool string) (stop func()) {
	tok := req.Params.GetProgressToken()
	if tok == nil || req.Session == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(n),
					Message: fmt.Sprintf("%s still running after %s", tool, time.Since(start).Round(time.Second))})
			}
		}
	}()
	return func() { cancel(); <-done }
}

// invalid is an error of kind invalid: bad arguments, found by a tool.
func invalid(format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalid)...)
}
