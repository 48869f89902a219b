package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
	"vers/internal/errdefs"
)

// connect is a session of the SDK's own client with a server over v.
func connect(t *testing.T, v Verbs) *mcp.ClientSession {
	t.Helper()
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := New(v, Options{}).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// result decodes a successful call's structured content into out.
func result(t *testing.T, name string, res *mcp.CallToolResult, out any) {
	t.Helper()
	if res.IsError {
		t.Fatalf("%s failed: %s", name, text(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v in %s", name, err, b)
	}
}

// toolErr is a failed call's error object.
func toolErr(t *testing.T, name string, res *mcp.CallToolResult) api.Error {
	t.Helper()
	if !res.IsError {
		t.Fatalf("%s succeeded, want an error: %s", name, text(res))
	}
	var e api.CLIError
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &e); err != nil {
		t.Fatalf("%s: the error is no {\"error\":...} object: %v: %s", name, err, text(res))
	}
	return e.Error
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text + "\n")
		}
	}
	return b.String()
}

func TestToolsListedWithSchemas(t *testing.T) {
	cs := connect(t, newFake())
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		byName[tool.Name] = tool
	}
	want := []string{"status", "run", "execute", "branch", "kill", "checkout", "info", "cp", "commit", "run-commit", "commits", "pause", "resume", "tags", "sleep", "wake", "restore", "compare", "diff", "pick", "tunnel", "tunnel_close"}
	for _, name := range want {
		tool := byName[name]
		if tool == nil {
			t.Errorf("no tool %s", name)
			continue
		}
		if tool.Description == "" || tool.InputSchema == nil || tool.OutputSchema == nil {
			t.Errorf("%s: description %q, input schema %v, output schema %v", name, tool.Description, tool.InputSchema, tool.OutputSchema)
		}
	}
	if len(byName) != len(want) {
		t.Errorf("tools %v, want %v", slices.Sorted(func(yield func(string) bool) {
			for n := range byName {
				if !yield(n) {
					return
				}
			}
		}), want)
	}
	// The required arguments are the ones without which a verb means nothing.
	required := map[string][]string{"execute": {"command"}, "kill": {"vm"}, "cp": {"src", "dst"}, "run-commit": {"commit"}, "restore": {"commit"}, "status": nil, "branch": nil}
	for name, req := range required {
		var s struct {
			Type       string                     `json:"type"`
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		b, _ := json.Marshal(byName[name].InputSchema)
		json.Unmarshal(b, &s)
		slices.Sort(s.Required)
		slices.Sort(req)
		if s.Type != "object" || !slices.Equal(s.Required, req) {
			t.Errorf("%s: input schema %s: want an object requiring %v", name, b, req)
		}
	}
	if !byName["status"].Annotations.ReadOnlyHint || byName["kill"].Annotations.DestructiveHint == nil || !*byName["kill"].Annotations.DestructiveHint {
		t.Error("status is not marked read-only, or kill destructive")
	}
}

func TestToolsHappyPaths(t *testing.T) {
	root := api.VM{ID: "vm1", Alias: "root", State: api.StateRunning}
	f := newFake(root)
	f.head = "vm1"
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		fmt.Fprint(stdout, "hi\n")
		fmt.Fprint(stderr, "warn\n")
		return api.ExecControl{Type: "exit", ExitCode: 3}, nil
	}
	cs := connect(t, f)

	var st StatusResult
	result(t, "status", call(t, cs, "status", nil), &st)
	if st.Head != "vm1" || len(st.VMs) != 1 || !st.VMs[0].Head || st.VMs[0].ID != "vm1" {
		t.Errorf("status: %+v", st)
	}

	var run RunResult
	result(t, "run", call(t, cs, "run", map[string]any{"alias": "new", "mem_size_mib": 256}), &run)
	if run.VM.ID == "" || run.Head != run.VM.ID || f.lastRun.MemMiB != 256 || f.lastRun.Alias != "new" {
		t.Errorf("run: %+v, asked %+v", run, f.lastRun)
	}

	var ex ExecuteResult
	result(t, "execute", call(t, cs, "execute", map[string]any{"vm": "root", "command": "echo hi; exit 3", "env": []string{"A=1"}}), &ex)
	if ex.VMID != "vm1" || ex.ExitCode != 3 || ex.Stdout != "hi\n" || ex.Stderr != "warn\n" || ex.Note != "" {
		t.Errorf("execute: %+v", ex)
	}
	if f.lastExec.Timeout != defaultTimeout || f.lastExec.Command != "echo hi; exit 3" || !slices.Equal(f.lastExec.Env, []string{"A=1"}) {
		t.Errorf("execute asked %+v", f.lastExec)
	}
	call(t, cs, "execute", map[string]any{"command": "true", "timeout_seconds": 5, "workdir": "/tmp"})
	if f.lastExec.Timeout != 5*time.Second || f.lastExec.Dir != "/tmp" || f.lastExec.VM != "" {
		t.Errorf("execute in HEAD asked %+v", f.lastExec)
	}

	var br BranchResult
	result(t, "branch", call(t, cs, "branch", map[string]any{"vm": "root", "count": 2}), &br)
	if br.Parent == nil || br.Parent.ID != "vm1" || len(br.Children) != 2 || br.Children[0].ParentID != "vm1" || br.Head != "" {
		t.Errorf("branch: %+v", br)
	}
	result(t, "branch", call(t, cs, "branch", map[string]any{"checkout": true}), &br)
	if len(br.Children) != 1 || br.Head != br.Children[0].ID {
		t.Errorf("branch checkout: %+v", br)
	}

	var co api.Checkout
	result(t, "checkout", call(t, cs, "checkout", map[string]any{"vm": "root"}), &co)
	if co.Head == nil || co.Head.ID != "vm1" || f.head != "vm1" {
		t.Errorf("checkout: %+v, head %s", co, f.head)
	}

	var info api.VMInfo
	result(t, "info", call(t, cs, "info", nil), &info)
	if info.ID != "vm1" || info.Accel != "tcg" {
		t.Errorf("info: %+v", info)
	}

	var cp CopyResult
	result(t, "cp", call(t, cs, "cp", map[string]any{"src": "notes.txt", "dst": "root:/root/"}), &cp)
	if cp.Bytes != 42 || f.lastCopy.Src != "notes.txt" || f.lastCopy.Dst != "root:/root/" || cp.Tree != nil {
		t.Errorf("cp: %+v", cp)
	}
	result(t, "cp -r", call(t, cs, "cp", map[string]any{"src": "dir", "dst": "root:/root/", "recursive": true}), &cp)
	if cp.Tree == nil || cp.Tree.Files != 2 || !f.lastCopy.Recursive {
		t.Errorf("cp recursive: %+v", cp)
	}

	var cm api.CommitResponse
	result(t, "commit", call(t, cs, "commit", map[string]any{"tag": "base"}), &cm)
	if cm.Commit.ID != "c-vm1" || !slices.Equal(cm.Commit.Tags, []string{"base"}) {
		t.Errorf("commit: %+v", cm)
	}
	var rc RunCommitResult
	result(t, "run-commit", call(t, cs, "run-commit", map[string]any{"commit": "c-vm1", "alias": "again"}), &rc)
	if len(rc.VMs) != 1 || rc.Head != "from-commit" || rc.VMs[0].Alias != "again" {
		t.Errorf("run-commit: %+v", rc)
	}
	var cl CommitsResult
	result(t, "commits", call(t, cs, "commits", nil), &cl)
	if len(cl.Commits) != 1 || cl.Commits[0].ID != "c-vm1" {
		t.Errorf("commits: %+v", cl)
	}

	var v api.VM
	result(t, "pause", call(t, cs, "pause", map[string]any{"vm": "root"}), &v)
	if v.State != api.StatePaused {
		t.Errorf("pause: %+v", v)
	}
	result(t, "resume", call(t, cs, "resume", map[string]any{"vm": "root"}), &v)
	if v.State != api.StateRunning {
		t.Errorf("resume: %+v", v)
	}

	var tags TagsResult
	result(t, "tags", call(t, cs, "tags", nil), &tags)
	if len(tags.Tags) != 1 || tags.Tags[0].Name != "base" {
		t.Errorf("tags: %+v", tags)
	}
	result(t, "sleep", call(t, cs, "sleep", map[string]any{"vm": "root"}), &v)
	if v.State != api.StateSleeping {
		t.Errorf("sleep: %+v", v)
	}
	call(t, cs, "checkout", map[string]any{"vm": "root"}) // run-commit moved HEAD
	result(t, "wake", call(t, cs, "wake", nil), &v)
	if v.State != api.StateRunning || v.ID != "vm1" {
		t.Errorf("wake: %+v", v)
	}
	result(t, "restore", call(t, cs, "restore", map[string]any{"commit": "c-vm1"}), &v)
	if v.ID != "vm1" || v.LastCommit != "c-vm1" {
		t.Errorf("restore: %+v", v)
	}

	var kill api.DeleteVMResponse
	result(t, "kill", call(t, cs, "kill", map[string]any{"vm": "root", "recursive": true}), &kill)
	if !slices.Equal(kill.Deleted, []string{"vm1"}) {
		t.Errorf("kill: %+v", kill)
	}
}

func TestToolErrorsCarryTheCode(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", Alias: "root", State: api.StateRunning}, api.VM{ID: "vm2", ParentID: "vm1", State: api.StateRunning})
	f.failWith["flaky"] = fmt.Errorf("versd is not running: %w", errdefs.ErrUnavailable)
	cs := connect(t, f)
	tests := []struct {
		tool string
		args map[string]any
		code string
		says string
	}{
		{"execute", map[string]any{"vm": "nope", "command": "true"}, api.CodeNotFound, "vm nope"},
		{"execute", map[string]any{"command": "true"}, api.CodeInvalid, "HEAD is not set"},
		{"execute", map[string]any{"vm": "root", "command": "  "}, api.CodeInvalid, "command is empty"},
		{"execute", map[string]any{"vm": "root", "command": "true", "timeout_seconds": 7200}, api.CodeInvalid, "timeout_seconds 7200"},
		{"execute", map[string]any{"vm": "root", "command": "true", "max_output_bytes": 1 << 30}, api.CodeInvalid, "max_output_bytes"},
		{"execute", map[string]any{"vm": "root", "command": "true", "env": []string{"NOEQUALS"}}, api.CodeInvalid, "KEY=VALUE"},
		{"kill", map[string]any{"vm": "root"}, api.CodeConflict, "has children"},
		{"kill", map[string]any{"vm": ""}, api.CodeInvalid, "name the VM"},
		{"info", map[string]any{"vm": "flaky"}, api.CodeUnavailable, "versd is not running"},
		{"branch", map[string]any{"vm": "root", "count": 2, "checkout": true}, api.CodeInvalid, "one child"},
		{"run", map[string]any{"network": "bridged"}, api.CodeInvalid, "isolated or none"},
		{"cp", map[string]any{"src": "root:/etc/hosts", "dst": "-"}, api.CodeInvalid, "protocol"},
		{"run-commit", map[string]any{"commit": "nope"}, api.CodeNotFound, "commit nope"},
		{"restore", map[string]any{"vm": "root", "commit": "nope"}, api.CodeNotFound, "commit nope"},
		{"restore", map[string]any{"vm": "root", "commit": " "}, api.CodeInvalid, "name the commit"},
		// Arguments the input schema refuses, as the SDK checks them.
		{"kill", map[string]any{}, api.CodeInvalid, "vm"},
		{"execute", map[string]any{"command": 5}, api.CodeInvalid, "command"},
		{"status", map[string]any{"colour": "red"}, api.CodeInvalid, "colour"},
	}
	for _, tt := range tests {
		e := toolErr(t, tt.tool, call(t, cs, tt.tool, tt.args))
		if e.Code != tt.code || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%s %v: %+v, want code %s and a message that says %q", tt.tool, tt.args, e, tt.code, tt.says)
		}
		if strings.HasSuffix(e.Message, ": "+errdefs.ErrNotFound.Error()) {
			t.Errorf("%s: the message repeats the kind: %q", tt.tool, e.Message)
		}
	}
	// What is no call of a tool at all is a protocol error.
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "no-such-tool"}); err == nil {
		t.Error("an unknown tool answered no JSON-RPC error")
	}
}

func TestExecuteTruncatesWithANote(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", State: api.StateRunning})
	out := strings.Repeat("a", 500) + strings.Repeat("b", 9000) + strings.Repeat("c", 500)
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		for i := 0; i < len(out); i += 333 { // in pieces, as output comes
			stdout.Write([]byte(out[i:min(i+333, len(out))]))
		}
		stderr.Write([]byte("short"))
		return api.ExecControl{Type: "exit"}, nil
	}
	cs := connect(t, f)
	var ex ExecuteResult
	result(t, "execute", call(t, cs, "execute", map[string]any{"vm": "vm1", "command": "yes", "max_output_bytes": 1000}), &ex)
	head, tail, ok := strings.Cut(ex.Stdout, "\n[... 9000 bytes dropped ...]\n")
	if !ok || head != strings.Repeat("a", 500) || tail != strings.Repeat("c", 500) {
		t.Errorf("stdout kept %q", ex.Stdout)
	}
	if ex.StdoutDropped != 9000 || ex.StderrDropped != 0 || ex.Stderr != "short" {
		t.Errorf("dropped %d/%d, stderr %q", ex.StdoutDropped, ex.StderrDropped, ex.Stderr)
	}
	if !strings.Contains(ex.Note, "stdout: 9000 bytes dropped") || strings.Contains(ex.Note, "stderr") || !strings.Contains(ex.Note, "max_output_bytes") {
		t.Errorf("note %q", ex.Note)
	}
}

func TestCapped(t *testing.T) {
	tests := []struct {
		limit   int
		writes  []string
		want    string
		dropped int64
	}{
		{10, []string{"hello"}, "hello", 0},
		{10, []string{"0123456789"}, "0123456789", 0},
		{10, []string{"01234", "56789", "X"}, "01234\n[... 1 bytes dropped ...]\n6789X", 1},
		{4, []string{"abcdefgh"}, "ab\n[... 4 bytes dropped ...]\ngh", 4},
		{4, []string{"a", "b", "c", "d", "e", "f"}, "ab\n[... 2 bytes dropped ...]\nef", 2},
	}
	for _, tt := range tests {
		c := newCapped(tt.limit)
		for _, w := range tt.writes {
			if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if c.String() != tt.want || c.dropped != tt.dropped {
			t.Errorf("limit %d, writes %q: %q (%d dropped), want %q (%d)", tt.limit, tt.writes, c.String(), c.dropped, tt.want, tt.dropped)
		}
	}
}

func TestExecuteTimeoutKeepsTheOutputSoFar(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", State: api.StateRunning})
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		stdout.Write([]byte("step 1 done\n"))
		return api.ExecControl{}, fmt.Errorf("command timed out after %s and was killed: %w", a.Timeout, errdefs.ErrTimeout)
	}
	cs := connect(t, f)
	res := call(t, cs, "execute", map[string]any{"vm": "vm1", "command": "slow", "timeout_seconds": 2})
	if e := toolErr(t, "execute", res); e.Code != api.CodeTimeout || !strings.Contains(e.Message, "2s") {
		t.Errorf("error %+v", e)
	}
	if !strings.Contains(text(res), "stdout so far:\nstep 1 done") {
		t.Errorf("the output so far is not in the result: %s", text(res))
	}
}

// TestExecuteCancelEndsTheCommand: a client that cancels its call ends
// the context the command runs under, which is what ends it in the VM.
func TestExecuteCancelEndsTheCommand(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", State: api.StateRunning})
	started, ended := make(chan struct{}), make(chan error, 1)
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		close(started)
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return api.ExecControl{}, ctx.Err()
		case <-time.After(time.Minute):
			ended <- errors.New("the command ran on after the call was cancelled")
			return api.ExecControl{}, nil
		}
	}
	cs := connect(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "execute", Arguments: map[string]any{"vm": "vm1", "command": "sleep 600"}})
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled call returned %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command's context did not end within 10s of the cancel")
	}
}

// TestLongCallsSayTheyRun: a call that gave a progress token hears of it
// while it runs; one that gave none hears nothing.
func TestLongCallsSayTheyRun(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 20 * time.Millisecond
	f := newFake(api.VM{ID: "vm1", State: api.StateRunning})
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		time.Sleep(200 * time.Millisecond)
		return api.ExecControl{Type: "exit"}, nil
	}
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := New(f, Options{}).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	heard := make(chan *mcp.ProgressNotificationParams, 100)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { heard <- r.Params },
	}).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	params := &mcp.CallToolParams{Name: "execute", Arguments: map[string]any{"vm": "vm1", "command": "make"}}
	if _, err := cs.CallTool(ctx, params); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 0 {
		t.Fatalf("a call without a progress token heard %d notifications", len(heard))
	}
	params.SetProgressToken("tok-1")
	if _, err := cs.CallTool(ctx, params); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-heard:
		if p.ProgressToken != "tok-1" || !strings.Contains(p.Message, "execute still running") {
			t.Errorf("progress %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a 200ms call with a progress token heard nothing")
	}
}

// TestLargestResultFitsAMessage: at the largest max_output_bytes, output
// that escapes worst (control bytes) still makes a result that the SDK's
// clients can read in one message.
func TestLargestResultFitsAMessage(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", State: api.StateRunning})
	junk := bytes.Repeat([]byte{1}, 2*maxOutput)
	f.exec = func(ctx context.Context, a ExecRequest, stdout, stderr io.Writer) (api.ExecControl, error) {
		stdout.Write(junk)
		stderr.Write(junk)
		return api.ExecControl{Type: "exit"}, nil
	}
	cs := connect(t, f)
	res := call(t, cs, "execute", map[string]any{"vm": "vm1", "command": "cat /dev/urandom", "max_output_bytes": maxOutput})
	var ex ExecuteResult
	result(t, "execute", res, &ex)
	if ex.StdoutDropped != int64(maxOutput) || ex.StderrDropped != int64(maxOutput) {
		t.Fatalf("dropped %d and %d", ex.StdoutDropped, ex.StderrDropped)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= mcp.DefaultMaxLineLength {
		t.Fatalf("the result is %d bytes, over the %d of a message", len(b), mcp.DefaultMaxLineLength)
	}
}

func TestCompareDiffPickTools(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", Alias: "a"}, api.VM{ID: "vm2", Alias: "b"})
	cs := connect(t, f)
	var fan api.FanoutResult
	result(t, "compare", call(t, cs, "compare", map[string]any{"command": "cat x", "vms": []string{"a", "b"}, "timeout_seconds": 5}), &fan)
	if len(fan.Results) != 2 || fan.Results[1].Stdout != "b\n" || f.lastTimeout != 5*time.Second || f.lastCompare.MaxOutputBytes != defaultOutput {
		t.Errorf("compare: %+v, timeout %s, args %+v", fan, f.lastTimeout, f.lastCompare)
	}
	for _, args := range []map[string]any{
		{"command": "x"},
		{"command": "x", "vms": []string{"a"}, "tree": "a"},
		{"command": " ", "vms": []string{"a"}},
		{"command": "x", "vms": []string{"a"}, "timeout_seconds": 99999},
	} {
		if e := toolErr(t, "compare", call(t, cs, "compare", args)); e.Code != api.CodeInvalid {
			t.Errorf("compare %v: %+v", args, e)
		}
	}
	if e := toolErr(t, "compare", call(t, cs, "compare", map[string]any{"command": "x", "vms": []string{"nope"}})); e.Code != api.CodeNotFound {
		t.Errorf("compare of a missing VM: %+v", e)
	}

	var d api.FSDiff
	result(t, "diff", call(t, cs, "diff", map[string]any{"a": "a", "b": "b", "paths": []string{"/etc"}, "content": true}), &d)
	if len(d.Changes) != 1 || f.lastDiff.A != "a" || f.lastDiff.Paths[0] != "/etc" || !f.lastDiff.Content {
		t.Errorf("diff: %+v, asked %+v", d, f.lastDiff)
	}
	if e := toolErr(t, "diff", call(t, cs, "diff", map[string]any{"a": "a", "b": ""})); e.Code != api.CodeInvalid {
		t.Errorf("diff without b: %+v", e)
	}

	var p api.PickResult
	result(t, "pick", call(t, cs, "pick", map[string]any{"vm": "a", "dry_run": true}), &p)
	if p.Kept.ID != "vm1" || !p.DryRun {
		t.Errorf("pick: %+v", p)
	}
	if e := toolErr(t, "pick", call(t, cs, "pick", map[string]any{"vm": "zzz"})); e.Code != api.CodeNotFound {
		t.Errorf("pick of a missing VM: %+v", e)
	}
}

func TestTunnelTools(t *testing.T) {
	f := newFake(api.VM{ID: "vm1", Alias: "a"})
	f.head = "vm1"
	cs := connect(t, f)
	var tr api.TunnelResult
	result(t, "tunnel", call(t, cs, "tunnel", map[string]any{"remote_port": 8000}), &tr)
	if tr.VMID != "vm1" || tr.Port == 0 || tr.RemotePort != 8000 {
		t.Errorf("tunnel: %+v", tr)
	}
	for _, args := range []map[string]any{{"remote_port": 0}, {"remote_port": 70000}, {"remote_port": 80, "local_port": -1}} {
		if e := toolErr(t, "tunnel", call(t, cs, "tunnel", args)); e.Code != api.CodeInvalid {
			t.Errorf("tunnel %v: %+v", args, e)
		}
	}
	var closed TunnelCloseResult
	result(t, "tunnel_close", call(t, cs, "tunnel_close", map[string]any{"port": tr.Port}), &closed)
	if closed.Closed != tr.Port {
		t.Errorf("tunnel_close: %+v", closed)
	}
	if e := toolErr(t, "tunnel_close", call(t, cs, "tunnel_close", map[string]any{"port": tr.Port})); e.Code != api.CodeNotFound {
		t.Errorf("closing it twice: %+v", e)
	}
}
