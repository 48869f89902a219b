package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"vers/internal/errdefs"
)

func testFactory() (*Factory, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &Factory{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut, WorkDir: "/nonexistent"}, &out, &errOut
}

func TestExecuteArgs(t *testing.T) {
	tests := []struct {
		args    []string
		vm, cmd string
		timeout time.Duration
		code    int
	}{
		{[]string{"sqlite3 /app/db/ecommerce.db '.tables'"}, "", "sqlite3 /app/db/ecommerce.db '.tables'", 0, 0},
		{[]string{"db-root", "echo hi"}, "db-root", "echo hi", 0, 0},
		{[]string{"--timeout", "2s", "vm1", "ls", "-l"}, "vm1", "ls -l", 2 * time.Second, 0},
		{[]string{}, "", "", 0, ExitUsage},
		{[]string{"   "}, "", "", 0, ExitUsage},
		{[]string{"--timeout", "-1s", "x"}, "", "", 0, ExitInvalid},
		{[]string{"--timeout", "soon", "x"}, "", "", 0, ExitUsage},
	}
	for _, tt := range tests {
		f, _, _ := testFactory()
		var got *ExecuteOptions
		cmd := NewCmdExecute(f, func(_ context.Context, o *ExecuteOptions) error { got = o; return nil })
		root := NewRoot(f)
		root.RemoveCommand(root.Commands()...)
		root.AddCommand(cmd)
		root.SetArgs(append([]string{"execute"}, tt.args...))
		err := root.Execute()
		if code := ExitCode(err); code != tt.code {
			t.Errorf("%q: exit %d (%v), want %d", tt.args, code, err, tt.code)
			continue
		}
		if tt.code == 0 && (got.VM != tt.vm || got.Command != tt.cmd || got.Timeout != tt.timeout) {
			t.Errorf("%q: got vm=%q cmd=%q timeout=%v", tt.args, got.VM, got.Command, got.Timeout)
		}
	}
}

func TestRunFlagsOverride(t *testing.T) {
	f, _, _ := testFactory()
	var got *RunOptions
	root := NewRoot(f)
	root.RemoveCommand(root.Commands()...)
	root.AddCommand(NewCmdRun(f, func(_ context.Context, o *RunOptions) error { got = o; return nil }))
	root.SetArgs([]string{"run", "--vm-alias", "db-root", "--mem-size-mib", "0"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Alias != "db-root" || !got.set["mem-size-mib"] || got.set["vcpu-count"] {
		t.Fatalf("got %+v", got)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{nil, 0},
		{errors.New("boom"), 1},
		{fmt.Errorf("x: %w", errUsage), 2},
		{fmt.Errorf("vm x: %w", errdefs.ErrNotFound), 3},
		{fmt.Errorf("alias: %w", errdefs.ErrConflict), 4},
		{fmt.Errorf("mem: %w", errdefs.ErrInvalid), 5},
		{fmt.Errorf("slow: %w", errdefs.ErrTimeout), 6},
		{&ExitErr{Code: 42}, 42},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.code {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}

func TestKillAndCheckoutArgs(t *testing.T) {
	f, _, _ := testFactory()
	root := NewRoot(f)
	root.SetArgs([]string{"kill"})
	if code := ExitCode(root.Execute()); code != ExitUsage {
		t.Errorf("kill with no VM: exit %d, want 2", code)
	}
	var got *KillOptions
	root = NewRoot(f)
	root.RemoveCommand(root.Commands()...)
	root.AddCommand(NewCmdKill(f, func(_ context.Context, o *KillOptions) error { got = o; return nil }))
	root.SetArgs([]string{"kill", "db-root", "-r"})
	if err := root.Execute(); err != nil || got.VM != "db-root" || !got.Recursive {
		t.Fatalf("kill db-root -r: %v %+v", err, got)
	}
}

func TestSplitRemote(t *testing.T) {
	tests := []struct {
		in, vm, path string
		remote       bool
	}{
		{"db-root:/app/x", "db-root", "/app/x", true},
		{":/etc/hosts", "", "/etc/hosts", true},
		{"/tmp/a:b", "", "/tmp/a:b", false},
		{"./a:b", "", "./a:b", false},
		{"local.txt", "", "local.txt", false},
	}
	for _, tt := range tests {
		vm, path, remote := splitRemote(tt.in)
		if vm != tt.vm || path != tt.path || remote != tt.remote {
			t.Errorf("splitRemote(%q) = %q %q %v", tt.in, vm, path, remote)
		}
	}
}

func TestBranchArgs(t *testing.T) {
	tests := []struct {
		args  []string
		code  int
		vm    string
		alias string
		count int
		co    bool
	}{
		{[]string{"--alias", "migration-premium"}, 0, "", "migration-premium", 1, false},
		{[]string{"db-root", "--alias", "x", "-c"}, 0, "db-root", "x", 1, true},
		{[]string{"--count", "3", "--alias", "s"}, 0, "", "s", 3, false},
		{[]string{"--count", "0"}, ExitInvalid, "", "", 0, false},
		{[]string{"--count", "2", "-c"}, ExitUsage, "", "", 0, false},
		{[]string{"a", "b"}, ExitUsage, "", "", 0, false},
		{[]string{"--format", "xml"}, ExitUsage, "", "", 0, false},
	}
	for _, tt := range tests {
		f, _, _ := testFactory()
		var got *BranchOptions
		root := NewRoot(f)
		root.RemoveCommand(root.Commands()...)
		root.AddCommand(NewCmdBranch(f, func(_ context.Context, o *BranchOptions) error { got = o; return nil }))
		root.SetArgs(append([]string{"branch"}, tt.args...))
		err := root.Execute()
		if code := ExitCode(err); code != tt.code {
			t.Errorf("%q: exit %d (%v), want %d", tt.args, code, err, tt.code)
			continue
		}
		if tt.code == 0 && (got.VM != tt.vm || got.Alias != tt.alias || got.Count != tt.count || got.Checkout != tt.co) {
			t.Errorf("%q: got %+v", tt.args, got)
		}
	}
}

func TestRunNetworkFlag(t *testing.T) {
	f, _, _ := testFactory()
	var got *RunOptions
	root := NewRoot(f)
	root.RemoveCommand(root.Commands()...)
	root.AddCommand(NewCmdRun(f, func(_ context.Context, o *RunOptions) error { got = o; return nil }))
	root.SetArgs([]string{"run", "--network", "none"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Network != "none" || !got.set["network"] {
		t.Fatalf("got network %q, set %v", got.Network, got.set)
	}
}
