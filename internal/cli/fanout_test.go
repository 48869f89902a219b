package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/client"
)

const (
	deadID  = "44444444-0000-0000-0000-000000000000"
	grandID = "55555555-0000-0000-0000-000000000000"
)

// treeEnv is newEnv with db-root's subtree grown: db-root → other (no alias)
// → grand, and db-root → dead-kid, whose exec fails as a dead VM's does.
// out maps a VM id to what its command prints and exits with.
func treeEnv(t *testing.T, out map[string]fakeRun) *env {
	e := newEnv(t)
	now := time.Now()
	e.d.vms = append(e.d.vms,
		api.VM{ID: deadID, Alias: "dead-kid", State: api.StateDead, ParentID: rootID, CreatedAt: now.Add(3 * time.Second)},
		api.VM{ID: grandID, Alias: "grand", State: api.StateRunning, ParentID: otherID, CreatedAt: now.Add(4 * time.Second)},
	)
	e.d.exec = func(_ context.Context, ref string, _ api.ExecRequest, s client.ExecIO) (api.ExecControl, error) {
		if ref == deadID {
			return api.ExecControl{}, &client.Error{Status: 409, Code: api.CodeConflict, Message: "vm dead-kid is dead"}
		}
		r := out[ref]
		io.WriteString(s.Stdout, r.stdout)
		io.WriteString(s.Stderr, r.stderr)
		return api.ExecControl{Type: "exit", ExitCode: r.code}, nil
	}
	return e
}

type fakeRun struct {
	stdout, stderr string
	code           int
}

func TestFanoutTreeTable(t *testing.T) {
	e := treeEnv(t, map[string]fakeRun{
		rootID:  {stdout: "orders\nproducts\nusers\n"},
		otherID: {stdout: "orders\nproducts\nusers\n"},
		grandID: {stderr: "Error: no such table\n", code: 2},
	})
	code := e.run("execute", "--tree", "db-root", "sqlite3 db .tables")
	if code != ExitSession {
		t.Errorf("exit %d, want the highest row code %d (the dead VM's)", code, ExitSession)
	}
	lines := strings.Split(strings.TrimSpace(e.out.String()), "\n")
	want := [][]string{
		{"VM", "EXIT", "TIME", "OUTPUT"},
		{"db-root", "0", "", "orders", "(+2 lines)"},
		{"33333333", "0", "", "= db-root"},
		{"grand", "2", "", "stderr: Error: no such table"},
		{"dead-kid", "-", "-", "vers: conflict: vm dead-kid is dead"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", e.out)
	}
	for i, w := range want {
		for _, part := range w {
			if !strings.Contains(lines[i], part) {
				t.Errorf("line %d %q lacks %q", i, lines[i], part)
			}
		}
	}
	if len(e.d.execs) != 4 {
		t.Errorf("%d execs: %+v", len(e.d.execs), e.d.execs)
	}
	for _, x := range e.d.execs {
		if x.Req.Command != "sqlite3 db .tables" {
			t.Errorf("ran %q", x.Req.Command)
		}
	}
}

func TestFanoutJSON(t *testing.T) {
	e := treeEnv(t, map[string]fakeRun{rootID: {stdout: "a\n"}, otherID: {stdout: "b\n", code: 3}, grandID: {stdout: "a\n"}})
	code := e.run("execute", "--format", "json", "--on", "db-root,grand", "--on", otherID[:8], "--on", "grand", "echo")
	if code != 3 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	var res api.FanoutResult
	dec := json.NewDecoder(e.out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("%v: %s", err, e.out)
	}
	if res.ExitCode != 3 || res.Command != "echo" || len(res.Results) != 3 || len(res.Groups) != 2 {
		t.Fatalf("%+v", res)
	}
	r := res.Results
	if r[0].VM.ID != rootID || r[1].VM.Alias != "grand" || r[2].VM.ID != otherID || r[0].Group != 1 || r[1].Group != 1 || r[2].Group != 2 {
		t.Errorf("rows %+v", r)
	}
	if g := res.Groups[0]; len(g.VMs) != 2 || g.ExitCode != 0 || res.Groups[1].ExitCode != 3 {
		t.Errorf("groups %+v", res.Groups)
	}
}

func TestFanoutFullOutput(t *testing.T) {
	e := treeEnv(t, map[string]fakeRun{rootID: {stdout: "x\ny\n"}, otherID: {stdout: "x\ny\n"}, grandID: {stdout: "z\n", stderr: "warn\n"}})
	if code := e.run("execute", "--output", "full", "--on", "db-root,"+otherID[:8]+",grand", "cmd"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	out := e.out.String()
	for _, want := range []string{"[1] 2 VMs, exit 0: db-root, 33333333", "x\ny\n", "[2] 1 VM, exit 0: grand\nz\nstderr:\n  warn\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFanoutRefusals(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--on", "db-root,no-such", "true"}, "vers: not_found: --on no-such"},
		{[]string{"--children", "head-vm", "true"}, "vers: not_found: vm head-vm has no children"},
		{[]string{"--tree", "nope", "true"}, "vers: not_found: --tree nope"},
		{[]string{"--on", "db-root", "--tree", "db-root", "true"}, "vers: usage: give one of --on, --children and --tree"},
		{[]string{"--on", "db-root,", "true"}, "vers: usage: --on has an empty VM name"},
		{[]string{"--on", "db-root", "-i", "cat"}, "vers: usage: -i passes standard input to one command"},
		{[]string{"--on", "db-root", "--output", "wide", "true"}, "vers: usage: --output is short or full"},
		{[]string{"--on", "db-root"}, "vers: usage: give a command"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		code := e.run(append([]string{"execute"}, tt.args...)...)
		if code != ExitSession || !strings.HasPrefix(e.errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tt.args, code, e.errOut, tt.want)
		}
		if len(e.d.execs) != 0 {
			t.Errorf("%q: ran %+v", tt.args, e.d.execs)
		}
	}
}

// TestFanoutRunsAtOnce: every command has started before any ends.
func TestFanoutRunsAtOnce(t *testing.T) {
	e := treeEnv(t, nil)
	var mu sync.Mutex
	started := 0
	all := make(chan struct{})
	e.d.exec = func(ctx context.Context, _ string, _ api.ExecRequest, _ client.ExecIO) (api.ExecControl, error) {
		mu.Lock()
		if started++; started == 3 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return api.ExecControl{Type: "exit"}, nil
		case <-time.After(10 * time.Second):
			return api.ExecControl{}, fmt.Errorf("the others never started")
		}
	}
	if code := e.run("execute", "--on", "db-root,grand,"+otherID[:8], "true"); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, e.out, e.errOut)
	}
}

// TestFanoutSignal: a signal ends every command of a fan-out at once.
func TestFanoutSignal(t *testing.T) {
	e := treeEnv(t, nil)
	e.d.exec = blockingExec(make(chan int, 8))
	sigs := make(chan os.Signal)
	cmd := NewCmdExecute(e.f, func(ctx context.Context, o *ExecuteOptions) error {
		o.Signals = func() (<-chan os.Signal, func()) { return sigs, func() {} }
		return runExecute(ctx, o)
	})
	root := NewRoot(e.f)
	root.RemoveCommand(root.Commands()...)
	root.AddCommand(cmd)
	root.SetArgs([]string{"execute", "--tree", "db-root", "sleep 100"})
	done := make(chan error, 1)
	go func() { done <- root.Execute() }()
	select {
	case sigs <- syscall.SIGTERM:
	case <-time.After(10 * time.Second):
		t.Fatal("vers does not take signals")
	}
	select {
	case err := <-done:
		if code := ExitCode(err); code != ExitSession || !strings.Contains(err.Error(), "cancelled: ended by") {
			t.Fatalf("exit %d: %v", code, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vers did not end on the signal")
	}
}

func TestCompare(t *testing.T) {
	e := treeEnv(t, map[string]fakeRun{rootID: {stdout: "users\n"}, otherID: {stdout: "users\norders\n"}, grandID: {stdout: "users\norders\n"}})
	code := e.run("compare", "--exec", ".tables", "--tree", "db-root")
	if code != ExitError {
		t.Errorf("exit %d, want 1 (they differ): %s", code, e.errOut)
	}
	want := "4 VMs, 3 results\n" +
		"[2] 2 VMs, exit 0: 33333333, grand\n    users\n    orders\n" +
		"[1] 1 VM, exit 0: db-root\n    users\n" +
		"[3] 1 VM, not run: dead-kid\n    vers: conflict: vm dead-kid is dead\n"
	if e.out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", e.out, want)
	}

	e = treeEnv(t, map[string]fakeRun{rootID: {stdout: "same\n"}, grandID: {stdout: "same\n"}})
	if code := e.run("compare", "--exec", "x", "db-root", "grand"); code != 0 || !strings.HasPrefix(e.out.String(), "2 VMs, 1 result\n") {
		t.Errorf("exit %d:\n%s%s", code, e.out, e.errOut)
	}
	for _, args := range [][]string{{"compare", "db-root"}, {"compare", "--exec", "x"}, {"compare", "--exec", "x", "--tree", "db-root", "grand"}} {
		if code := e.run(args...); code != ExitUsage {
			t.Errorf("%q: exit %d: %s", args, code, e.errOut)
		}
	}
}

func TestDiffExec(t *testing.T) {
	e := treeEnv(t, map[string]fakeRun{
		rootID:  {stdout: "CREATE TABLE users(id);\n"},
		grandID: {stdout: "CREATE TABLE users(id);\nCREATE TABLE orders(id);\n", code: 1},
		otherID: {stdout: "CREATE TABLE users(id);\n"},
	})
	if code := e.run("diff", "db-root", "grand", "--exec", ".schema"); code != ExitError {
		t.Errorf("exit %d: %s", code, e.errOut)
	}
	for _, want := range []string{"--- db-root\n+++ grand\n", "+CREATE TABLE orders(id);\n", "exit code: db-root 0, grand 1\n"} {
		if !strings.Contains(e.out.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, e.out)
		}
	}
	if code := e.run("diff", "db-root", otherID[:8], "--exec", ".schema"); code != 0 || !strings.Contains(e.out.String(), "print the same") {
		t.Errorf("exit %d:\n%s", code, e.out)
	}
	if code := e.run("diff", "db-root", otherID[:8], "--exec", ".schema", "--format", "json"); code != 0 {
		t.Errorf("exit %d: %s", code, e.errOut)
	}
	var d api.ExecDiff
	if err := json.Unmarshal(e.out.Bytes(), &d); err != nil || !d.Same || d.A.VM.ID != rootID || d.StdoutDiff != "" {
		t.Errorf("%v: %+v", err, d)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"diff", "db-root", "dead-kid", "--exec", "x"}, ExitConflict, "vers: in dead-kid: vm dead-kid is dead"},
		{[]string{"diff", "db-root", "nope", "--exec", "x"}, ExitNotFound, "vers: --on nope"},
		{[]string{"diff", "db-root", "db-root", "--exec", "x"}, ExitUsage, "vers: db-root and db-root are the same VM"},
		{[]string{"diff", "db-root", "grand", "/etc", "--exec", "x"}, ExitUsage, "vers: --exec compares a command's outputs; paths"},
	}
	for _, tt := range tests {
		if code := e.run(tt.args...); code != tt.code || !strings.HasPrefix(e.errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, %q; want %d, %q", tt.args, code, e.errOut, tt.code, tt.want)
		}
	}
}

func TestRowSummary(t *testing.T) {
	long := strings.Repeat("é", 80)
	if s := rowSummary(api.FanoutRow{Stdout: long + "\nx\n"}); !strings.HasSuffix(s, "…  (+1 lines)") || len([]rune(s)) != summaryWidth+len("  (+1 lines)") {
		t.Errorf("summary %q", s)
	}
	if s := rowSummary(api.FanoutRow{Stdout: "orders    products  users   \n"}); s != "orders products users" {
		t.Errorf("summary %q", s)
	}
	if s := rowSummary(api.FanoutRow{Stdout: "\n"}); s != "(no output)" {
		t.Errorf("summary %q", s)
	}
}
