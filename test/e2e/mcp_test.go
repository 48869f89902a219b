package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
)

// mcpSession is a session of the Go SDK's own client (no vers code) with
// the real `vers mcp serve`, started in the project's directory.
func (p *project) mcpSession(ctx context.Context) *mcp.ClientSession {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "vers"), "mcp", "serve")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		p.t.Fatalf("vers mcp serve: %v\nstderr: %s", err, stderr.String())
	}
	p.t.Cleanup(func() {
		cs.Close()
		p.t.Logf("vers mcp serve stderr:\n%s", stderr.String())
	})
	return cs
}

// syncBuffer is a bytes.Buffer that a process's stderr and a test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// callTool calls a tool and decodes its structured result into out; it
// returns the error object of a failed call instead.
func callTool(ctx context.Context, t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) *mcpError {
	t.Helper()
	start := time.Now()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tool %s: %v", name, err)
	}
	t.Logf("tool %s %v -> error %v (%.2fs)", name, args, res.IsError, time.Since(start).Seconds())
	if res.IsError {
		var e struct {
			Error mcpError `json:"error"`
		}
		text := res.Content[0].(*mcp.TextContent).Text
		if err := json.Unmarshal([]byte(text), &e); err != nil {
			t.Fatalf("tool %s: an error result that is no error object: %s", name, text)
		}
		return &e.Error
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("tool %s: %v: %s", name, err, b)
	}
	return nil
}

type mcpError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// mustTool is callTool that fails the test on an error result.
func mustTool(ctx context.Context, t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) {
	t.Helper()
	if e := callTool(ctx, t, cs, name, args, out); e != nil {
		t.Fatalf("tool %s %v: %s: %s", name, args, e.Code, e.Message)
	}
}

type mcpExec struct {
	VMID     string `json:"vm_id"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// TestMCP: an MCP client that vers did not write drives `vers mcp serve`:
// it lists the tools, boots a VM, runs a command in it (its output and exit
// code), copies a file in and out, cancels a command (which ends it in the guest), branches the VM,
// sees the child in status, and kills both; a call on a VM that does not
// exist fails with not_found.
func TestMCP(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cs := p.mcpSession(ctx)

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"status", "run", "execute", "branch", "kill", "checkout", "info", "cp", "commit", "run-commit"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list has no %s: %v", want, names)
		}
	}

	alias := uniqueAlias(t, "mcp")
	var run struct {
		VM   statusVM `json:"vm"`
		Head string   `json:"head"`
	}
	mustTool(ctx, t, cs, "run", map[string]any{"alias": alias}, &run)
	defer p.vers("kill", "-r", alias)
	if run.VM.ID == "" || run.VM.Alias != alias || run.Head != run.VM.ID {
		t.Fatalf("run: %+v", run)
	}
	if head := strings.TrimSpace(p.must("checkout", "--format", "json")); !strings.Contains(head, run.VM.ID) {
		t.Fatalf("run did not move the project's HEAD: %s", head)
	}

	var ex mcpExec
	mustTool(ctx, t, cs, "execute", map[string]any{"command": "echo hi; echo oops >&2; exit 3"}, &ex)
	if ex.Stdout != "hi\n" || ex.Stderr != "oops\n" || ex.ExitCode != 3 || ex.VMID != run.VM.ID {
		t.Fatalf("execute in HEAD: %+v", ex)
	}

	// One file each way, host paths relative to the project.
	if err := os.WriteFile(filepath.Join(p.dir, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cp struct {
		Bytes int64 `json:"bytes"`
	}
	mustTool(ctx, t, cs, "cp", map[string]any{"src": "in.txt", "dst": ":/root/"}, &cp)
	mustTool(ctx, t, cs, "execute", map[string]any{"command": "cat /root/in.txt; echo more >> /root/in.txt"}, &ex)
	if cp.Bytes != 14 || ex.Stdout != "from the host\n" {
		t.Fatalf("cp to HEAD: %+v, then cat: %+v", cp, ex)
	}
	mustTool(ctx, t, cs, "cp", map[string]any{"src": alias + ":/root/in.txt", "dst": "out.txt"}, &cp)
	if b, err := os.ReadFile(filepath.Join(p.dir, "out.txt")); err != nil || string(b) != "from the host\nmore\n" {
		t.Fatalf("cp from the VM: %q, %v", b, err)
	}

	// A call the client cancels ends its command in the guest. ("[9]"
	// keeps the pgrep's own shell, whose command line holds the pattern,
	// from matching it.)
	const sleeping = "pgrep -f 'sleep [9]87' || true"
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "execute", Arguments: map[string]any{"vm": alias, "command": "sleep 987"}})
		done <- err
	}()
	waitFor(t, "sleep 987 to run in the guest", 60*time.Second, func() bool {
		var r mcpExec
		mustTool(ctx, t, cs, "execute", map[string]any{"vm": alias, "command": sleeping}, &r)
		return strings.TrimSpace(r.Stdout) != ""
	})
	ccancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled call returned no error")
	}
	waitFor(t, "the cancelled command to end in the guest", 30*time.Second, func() bool {
		var r mcpExec
		mustTool(ctx, t, cs, "execute", map[string]any{"vm": alias, "command": sleeping}, &r)
		return strings.TrimSpace(r.Stdout) == ""
	})

	var br struct {
		Parent   statusVM   `json:"parent"`
		Children []statusVM `json:"children"`
	}
	mustTool(ctx, t, cs, "branch", map[string]any{"vm": alias, "alias": alias + "-child"}, &br)
	if len(br.Children) != 1 || br.Parent.ID != run.VM.ID || br.Children[0].ParentID != run.VM.ID {
		t.Fatalf("branch: %+v", br)
	}
	child := br.Children[0].ID
	var st struct {
		VMs []statusVM `json:"vms"`
	}
	mustTool(ctx, t, cs, "status", nil, &st)
	i := slices.IndexFunc(st.VMs, func(v statusVM) bool { return v.ID == child })
	if i < 0 || st.VMs[i].ParentID != run.VM.ID || st.VMs[i].Head {
		t.Fatalf("status does not show the child %s under %s: %+v", child, run.VM.ID, st.VMs)
	}
	mustTool(ctx, t, cs, "execute", map[string]any{"vm": child, "command": "echo child"}, &ex)
	if ex.Stdout != "child\n" || ex.VMID != child {
		t.Fatalf("execute in the child: %+v", ex)
	}

	// A tunnel outlives its call, and tunnel_close ends it.
	startEchoServer(t, p, child, 7100)
	var tr api.TunnelResult
	mustTool(ctx, t, cs, "tunnel", map[string]any{"vm": child, "remote_port": 7100}, &tr)
	if got, err := exchange(tr.Local, []byte("via mcp")); err != nil || string(got) != "echo:via mcp" {
		t.Fatalf("through the tunnel on %s: %q, %v", tr.Local, got, err)
	}
	var closed struct {
		Closed int `json:"closed"`
	}
	mustTool(ctx, t, cs, "tunnel_close", map[string]any{"port": tr.Port}, &closed)
	if closed.Closed != tr.Port {
		t.Fatalf("tunnel_close: %+v", closed)
	}
	if _, err := net.DialTimeout("tcp", tr.Local, 2*time.Second); err == nil {
		t.Fatalf("%s still listens after tunnel_close", tr.Local)
	}

	if e := callTool(ctx, t, cs, "execute", map[string]any{"vm": "no-such-vm-mcp", "command": "true"}, &ex); e == nil || e.Code != "not_found" {
		t.Fatalf("execute in a VM that does not exist: %+v", e)
	}
	// A VM with children is not killed without recursive.
	if e := callTool(ctx, t, cs, "kill", map[string]any{"vm": alias}, &struct{}{}); e == nil || e.Code != "conflict" {
		t.Fatalf("kill of a VM with a child: %+v", e)
	}
	var killed struct {
		Deleted []string `json:"deleted"`
	}
	mustTool(ctx, t, cs, "kill", map[string]any{"vm": child}, &killed)
	if !slices.Equal(killed.Deleted, []string{child}) {
		t.Fatalf("kill child: %+v", killed)
	}
	mustTool(ctx, t, cs, "kill", map[string]any{"vm": alias}, &killed)
	if !slices.Equal(killed.Deleted, []string{run.VM.ID}) {
		t.Fatalf("kill: %+v", killed)
	}
	mustTool(ctx, t, cs, "status", nil, &st)
	for _, v := range st.VMs {
		if v.ID == run.VM.ID || v.ID == child {
			t.Fatalf("status still shows %s after kill", v.ID)
		}
	}
}

// TestMCPHTTP: `vers mcp serve --http` answers 401 without the token, and
// serves the SDK's streamable client that sends it. No VM is booted.
func TestMCPHTTP(t *testing.T) {
	requireVMs(t) // it starts versd, which the suite runs as root
	p := newProject(t)
	p.must("init")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	token := strings.Repeat("5e", 24)
	cmd := exec.Command(filepath.Join(binDir, "vers"), "mcp", "serve", "--http", addr)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "VERS_MCP_TOKEN="+token)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(stderr).ReadString('\n')
	if !strings.Contains(line, "http://"+addr) || !strings.Contains(line, "VERS_MCP_TOKEN") || strings.Contains(line, token) {
		t.Fatalf("vers mcp serve --http says %q", line)
	}

	resp, err := http.Post("http://"+addr+"/", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %s", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tr := &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/", HTTPClient: &http.Client{Transport: bearerRoundTripper{token}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var st struct {
		VMs []statusVM `json:"vms"`
	}
	mustTool(ctx, t, cs, "status", nil, &st)
	if e := callTool(ctx, t, cs, "info", map[string]any{"vm": "no-such-vm-mcp"}, &struct{}{}); e == nil || e.Code != "not_found" {
		t.Fatalf("info over HTTP of a VM that does not exist: %+v", e)
	}
}

type bearerRoundTripper struct{ token string }

func (b bearerRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
