package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
	"vers/client"
	"vers/internal/project"
)

// serveMCP runs `vers mcp serve` of e on pipes and returns a session of
// the SDK's client with it; the server's exit code comes on the channel
// once the session is closed.
func serveMCP(t *testing.T, e *env, flags ...string) (*mcp.ClientSession, <-chan int) {
	t.Helper()
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	e.f.In, e.f.Out = toServer, fromServer
	code := make(chan int, 1)
	go func() {
		code <- Main(context.Background(), e.f, append([]string{"mcp", "serve"}, flags...))
		fromServer.Close()
	}()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).
		Connect(context.Background(), &mcp.IOTransport{Reader: toClient, Writer: fromClient}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cs, code
}

func mcpCall(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) (isError bool, content string) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, c := range res.Content {
		content += c.(*mcp.TextContent).Text
	}
	if !res.IsError && out != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v: %s", name, err, b)
		}
	}
	return res.IsError, content
}

// TestMCPServeActsAsTheCommands: the tools take HEAD from the project the
// server runs in, move it as the commands do, and fail with the codes of
// --format json; nothing the commands print reaches the protocol.
func TestMCPServeActsAsTheCommands(t *testing.T) {
	e := newEnv(t)
	e.d.exec = func(ctx context.Context, ref string, req api.ExecRequest, s client.ExecIO) (api.ExecControl, error) {
		fmt.Fprintf(s.Stdout, "ran %q in %s", req.Command, ref)
		return api.ExecControl{Type: "exit", ExitCode: 3}, nil
	}
	cs, code := serveMCP(t, e)

	var ex struct {
		VMID     string `json:"vm_id"`
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
	}
	if isErr, c := mcpCall(t, cs, "execute", map[string]any{"command": "make", "timeout_seconds": 30}, &ex); isErr {
		t.Fatalf("execute in HEAD: %s", c)
	}
	if ex.VMID != headID || ex.ExitCode != 3 || ex.Stdout != `ran "make" in `+headID {
		t.Errorf("execute in HEAD: %+v", ex)
	}
	if got := e.d.execs[len(e.d.execs)-1].Req; got.TimeoutMS != 30000 {
		t.Errorf("the timeout did not reach versd: %+v", got)
	}

	var co api.Checkout
	mcpCall(t, cs, "checkout", map[string]any{"vm": "db-root"}, &co)
	if co.Head == nil || co.Head.ID != rootID || e.head() != rootID {
		t.Errorf("checkout db-root: %+v, HEAD %s", co, e.head())
	}

	// The first run builds the missing rootfs: its progress goes to stderr.
	var run struct {
		VM   api.VM `json:"vm"`
		Head string `json:"head"`
	}
	if isErr, c := mcpCall(t, cs, "run", map[string]any{"alias": "fresh", "vcpu_count": 2}, &run); isErr {
		t.Fatalf("run: %s", c)
	}
	if run.VM.ID == "" || run.Head != run.VM.ID || e.head() != run.VM.ID || e.d.created[0].VCPUs != 2 || e.d.created[0].MemMiB != 512 {
		t.Errorf("run: %+v, HEAD %s, created %+v", run, e.head(), e.d.created)
	}
	if !strings.Contains(e.errOut.String(), "default") {
		t.Errorf("the build's progress went nowhere: stderr %q", e.errOut)
	}

	var killed api.DeleteVMResponse
	mcpCall(t, cs, "kill", map[string]any{"vm": "fresh"}, &killed)
	if len(killed.Deleted) != 1 || killed.Deleted[0] != run.VM.ID || e.head() != "" {
		t.Errorf("kill HEAD: %+v, HEAD %q", killed, e.head())
	}

	// A relative host path is the project directory's, not the process's.
	os.WriteFile(filepath.Join(e.f.WorkDir, "notes.txt"), []byte("12345"), 0o644)
	e.d.acceptFiles = true
	var cp api.CopyResult
	if isErr, c := mcpCall(t, cs, "cp", map[string]any{"src": "notes.txt", "dst": "db-root:/root/"}, &cp); isErr || cp.Bytes != 5 {
		t.Errorf("cp of a relative host path: %+v %s", cp, c)
	}

	for _, tt := range []struct {
		tool string
		args map[string]any
		code string
		says string
	}{
		{"execute", map[string]any{"command": "true"}, api.CodeInvalid, "HEAD is not set"},
		{"execute", map[string]any{"vm": "no-such-vm", "command": "true"}, api.CodeNotFound, `no VM "no-such-vm"`},
		{"info", map[string]any{"vm": "no-such-vm"}, api.CodeNotFound, "no-such-vm"},
		{"cp", map[string]any{"src": "a", "dst": "b"}, api.CodeInvalid, "exactly one side"},
	} {
		isErr, c := mcpCall(t, cs, tt.tool, tt.args, nil)
		var e api.CLIError
		if !isErr || json.Unmarshal([]byte(c), &e) != nil || e.Error.Code != tt.code || !strings.Contains(e.Error.Message, tt.says) {
			t.Errorf("%s %v: error %v, %s; want code %s saying %q", tt.tool, tt.args, isErr, c, tt.code, tt.says)
		}
	}
	// HEAD naming a VM killed since says so.
	e.proj.SetHead("44444444-gone")
	if _, c := mcpCall(t, cs, "info", nil, nil); !strings.Contains(c, "HEAD names VM 44444444-gone") {
		t.Errorf("info of a gone HEAD: %s", c)
	}

	cs.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("vers mcp serve exited %d when its client went away: %s", c, e.errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vers mcp serve did not end when its client closed stdin")
	}
}

// TestMCPServePaused: execute in a paused VM says how to resume it with
// the tools, and resume: true does.
func TestMCPServePaused(t *testing.T) {
	e := newEnv(t)
	e.d.Pause(context.Background(), rootID)
	cs, _ := serveMCP(t, e)
	defer cs.Close()
	isErr, c := mcpCall(t, cs, "execute", map[string]any{"vm": "db-root", "command": "true"}, nil)
	if !isErr || !strings.Contains(c, `"code":"conflict"`) || !strings.Contains(c, "resume: true") || strings.Contains(c, "--resume") {
		t.Errorf("execute in a paused VM: %s", c)
	}
	var ex struct {
		VMID string `json:"vm_id"`
	}
	if isErr, c := mcpCall(t, cs, "execute", map[string]any{"vm": "db-root", "command": "true", "resume": true}, &ex); isErr || ex.VMID != rootID {
		t.Errorf("execute with resume: %s", c)
	}
	if v, _ := e.d.GetVM(context.Background(), rootID); v.State != api.StateRunning {
		t.Errorf("resume: true left it %s", v.State)
	}
}

// TestMCPServeDir: --dir is the project the tools act in.
func TestMCPServeDir(t *testing.T) {
	e := newEnv(t)
	other := t.TempDir()
	project.Init(other)
	p, _ := project.Find(other)
	p.SetHead(rootID)
	cs, _ := serveMCP(t, e, "--dir", other)
	defer cs.Close()
	var ex struct {
		VMID string `json:"vm_id"`
	}
	if isErr, c := mcpCall(t, cs, "execute", map[string]any{"command": "true"}, &ex); isErr || ex.VMID != rootID {
		t.Errorf("execute in --dir's HEAD: %+v %s", ex, c)
	}
	if code := e.run("mcp", "serve", "--dir", filepath.Join(other, "nope")); code != ExitInvalid || !strings.Contains(e.errOut.String(), "is no directory") {
		t.Errorf("--dir of nothing: exit %d: %s", code, e.errOut)
	}
}

func TestMCPServeFlags(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"mcp", "serve", "--token-file", "mcp.token"}, ExitUsage, "--token-file is the token of --http"},
		{[]string{"mcp", "serve", "--http", ":7780"}, ExitInvalid, "0.0.0.0:7780"},
		{[]string{"mcp", "serve", "--http", "localhost"}, ExitInvalid, "address and a port"},
		{[]string{"mcp", "serve", "extra"}, ExitUsage, "unknown command"},
	} {
		if code := e.run(tt.args...); code != tt.code || !strings.Contains(e.errOut.String(), tt.says) {
			t.Errorf("vers %v: exit %d, %q; want %d saying %q", tt.args, code, e.errOut, tt.code, tt.says)
		}
	}
	e.f.MCPToken = "short"
	o := &MCPServeOptions{f: e.f}
	if _, _, err := o.token(); err == nil || !strings.Contains(err.Error(), "VERS_MCP_TOKEN is shorter") {
		t.Errorf("a short VERS_MCP_TOKEN: %v", err)
	}
	e.f.MCPToken = strings.Repeat("k", 40)
	if tok, from, err := o.token(); err != nil || tok != e.f.MCPToken || strings.Contains(from, tok) {
		t.Errorf("VERS_MCP_TOKEN: %q from %q, %v", tok, from, err)
	}
	o.TokenFile = t.TempDir() + "/mcp.token"
	tok, from, err := o.token()
	if err != nil || len(tok) != 64 || tok == e.f.MCPToken || !strings.Contains(from, o.TokenFile) {
		t.Errorf("--token-file wins over VERS_MCP_TOKEN and is made: %q from %q, %v", tok, from, err)
	}
}
