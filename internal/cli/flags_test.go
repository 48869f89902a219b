package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"vers/internal/errdefs"
)

func testFactory() (*Factory, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &Factory{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut, WorkDir: "/nonexistent"}, &out, &errOut
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
		{fmt.Errorf("build: %w", errCancelled), 7},
		{context.Canceled, 7},
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

func TestSessionExit(t *testing.T) {
	tests := []struct {
		err  error
		code int
		msg  string
	}{
		{nil, 0, ""},
		{&ExitErr{Code: 3}, 3, "exit status 3"}, // the remote command's own code
		{fmt.Errorf("vm x: %w", errdefs.ErrNotFound), 255, "not_found: vm x"},
		{fmt.Errorf("bad: %w", errUsage), 255, "usage: bad"},
		{fmt.Errorf("slow: %w", errdefs.ErrTimeout), 255, "timeout: slow"},
		{fmt.Errorf("ended: %w", errCancelled), 255, "cancelled: ended"},
		{errors.New("boom"), 255, "error: boom"},
	}
	for _, tt := range tests {
		err := sessionExit(tt.err)
		if ExitCode(err) != tt.code || (err != nil && message(err) != tt.msg) {
			t.Errorf("sessionExit(%v) = %v (exit %d)", tt.err, err, ExitCode(err))
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
