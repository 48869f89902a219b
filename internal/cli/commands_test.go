package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

func TestExecuteForms(t *testing.T) {
	tests := []struct {
		args    []string
		ref     string // the VM the command ran in
		command string
		timeout int64
		env     []string
	}{
		{[]string{"ls", "-la"}, headID, "ls -la", 0, nil},
		{[]string{"sqlite3 /app/db/ecommerce.db '.tables'"}, headID, "sqlite3 /app/db/ecommerce.db '.tables'", 0, nil},
		{[]string{"db-root", "ls", "-la"}, "db-root", "ls -la", 0, nil},
		{[]string{"22222222", "echo hi"}, "22222222", "echo hi", 0, nil},
		{[]string{"db-root", "--timeout", "5s", "x"}, "db-root", "x", 5000, nil},
		{[]string{"--timeout", "2s", "db-root", "-e", "A=1", "env"}, "db-root", "env", 2000, []string{"A=1"}},
		{[]string{"db-root", "--", "ls", "-la"}, "db-root", "ls -la", 0, nil},
		{[]string{"db-root", "--", "--timeout", "5s"}, "db-root", "--timeout 5s", 0, nil},
		{[]string{"--", "db-root", "x"}, headID, "db-root x", 0, nil},
		{[]string{"db-root"}, headID, "db-root", 0, nil},
		{[]string{"ls", "--timeout", "5s"}, headID, "ls --timeout 5s", 0, nil},
		{[]string{"--timeout", "1500us", "true"}, headID, "true", 2, nil},
		{[]string{"-e", "A=", "-e", "B=x=y", "env"}, headID, "env", 0, []string{"A=", "B=x=y"}},
	}
	for _, tt := range tests {
		e := newEnv(t)
		if code := e.run(append([]string{"execute"}, tt.args...)...); code != 0 {
			t.Errorf("%q: exit %d: %s", tt.args, code, e.errOut)
			continue
		}
		if len(e.d.execs) != 1 {
			t.Errorf("%q: %d execs", tt.args, len(e.d.execs))
			continue
		}
		got := e.d.execs[0]
		if got.Ref != tt.ref || got.Req.Command != tt.command || got.Req.TimeoutMS != tt.timeout || fmt.Sprint(got.Req.Env) != fmt.Sprint(tt.env) {
			t.Errorf("%q: ran %q in %s (timeout %dms, env %q); want %q in %s (%dms, %q)",
				tt.args, got.Req.Command, got.Ref, got.Req.TimeoutMS, got.Req.Env, tt.command, tt.ref, tt.timeout, tt.env)
		}
	}
}

func TestExecuteRefusals(t *testing.T) {
	tests := []struct {
		args []string
		want string // on stderr
	}{
		{nil, "vers: usage: give a command"},
		{[]string{"   "}, "vers: usage: give a command"},
		{[]string{"db-root", "--"}, "vers: usage: no command for VM db-root"},
		{[]string{"--timeout", "soon", "x"}, "vers: usage: invalid argument"},
		{[]string{"--timeout", "-1s", "x"}, "vers: invalid: --timeout must not be negative"},
		{[]string{"--timeout", "1ns", "x"}, "vers: invalid: --timeout 1ns is less than a millisecond"},
		{[]string{"-e", "NOEQUALS", "true"}, "vers: invalid: -e \"NOEQUALS\": write it KEY=VALUE"},
		{[]string{"db-root", "-e", "=1", "true"}, "vers: invalid: -e \"=1\": write it KEY=VALUE"},
		{[]string{"no-such-vm", "--", "true"}, "vers: not_found: no VM \"no-such-vm\""},
	}
	for _, tt := range tests {
		e := newEnv(t)
		code := e.run(append([]string{"execute"}, tt.args...)...)
		if code != ExitSession || !strings.HasPrefix(e.errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tt.args, code, e.errOut, ExitSession, tt.want)
		}
		if len(e.d.execs) != 0 {
			t.Errorf("%q: ran %+v", tt.args, e.d.execs)
		}
	}
}

func TestExecuteHelpIsNotACommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"db-root", "-h"}} {
		e := newEnv(t)
		if code := e.run(append([]string{"execute"}, args...)...); code != 0 || !strings.Contains(e.out.String(), "The first word names a VM only when") {
			t.Errorf("%q: exit %d, out %q", args, code, e.out)
		}
		if len(e.d.execs) != 0 {
			t.Errorf("%q ran a command", args)
		}
	}
}

func TestExecuteWithoutHead(t *testing.T) {
	e := newEnv(t)
	e.proj.SetHead("")
	if code := e.run("execute", "no-such-vm", "true"); code != ExitSession ||
		!strings.Contains(e.errOut.String(), `no VM is named "no-such-vm"`) || !strings.Contains(e.errOut.String(), "HEAD is not set") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	// HEAD names a VM killed since.
	e.proj.SetHead("99999999-gone")
	if code := e.run("execute", "true"); code != ExitSession || !strings.Contains(e.errOut.String(), "vers: not_found: HEAD names VM 99999999-gone") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
}

func TestExecuteExitCodes(t *testing.T) {
	tests := []struct {
		ctl  api.ExecControl
		err  error
		code int
		want string
	}{
		{api.ExecControl{Type: "exit", ExitCode: 0}, nil, 0, ""},
		// The command's own 3-6 are its own, not vers's.
		{api.ExecControl{Type: "exit", ExitCode: 3}, nil, 3, ""},
		{api.ExecControl{Type: "exit", ExitCode: 6}, nil, 6, ""},
		{api.ExecControl{Type: "exit", ExitCode: 137, TimedOut: true}, nil, ExitSession, "vers: timeout: command timed out after 1s"},
		{api.ExecControl{}, &client.Error{Code: api.CodeConflict, Message: "vm x is paused"}, ExitSession, "vers: conflict: vm x is paused"},
		{api.ExecControl{}, &client.Error{Code: api.CodeInvalid, Message: "environment entry"}, ExitSession, "vers: invalid: environment entry"},
		{api.ExecControl{}, fmt.Errorf("connection to versd lost"), ExitSession, "vers: error: connection to versd lost"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		e.d.exec = func(context.Context, string, api.ExecRequest, client.ExecIO) (api.ExecControl, error) {
			return tt.ctl, tt.err
		}
		code := e.run("execute", "--timeout", "1s", "true")
		if code != tt.code || !strings.HasPrefix(e.errOut.String(), tt.want) {
			t.Errorf("%+v %v: exit %d, stderr %q; want %d %q", tt.ctl, tt.err, code, e.errOut, tt.code, tt.want)
		}
	}
}

// blockingExec is an exec whose command never ends: it returns when ctx
// does (as the client does when the WebSocket is closed), and reports the
// signals forwarded to it.
func blockingExec(forwarded chan<- int) func(context.Context, string, api.ExecRequest, client.ExecIO) (api.ExecControl, error) {
	return func(ctx context.Context, _ string, _ api.ExecRequest, s client.ExecIO) (api.ExecControl, error) {
		for {
			select {
			case <-ctx.Done():
				return api.ExecControl{}, ctx.Err()
			case sig := <-s.Signal:
				forwarded <- sig
			}
		}
	}
}

func TestExecuteOwnDeadline(t *testing.T) {
	e := newEnv(t)
	e.d.exec = blockingExec(make(chan int, 1))
	start := time.Now()
	code := e.run("execute", "--timeout", "50ms", "sleep 100")
	if took := time.Since(start); took > 50*time.Millisecond+timeoutGrace+time.Second {
		t.Fatalf("took %s", took)
	}
	if code != ExitSession || !strings.HasPrefix(e.errOut.String(), "vers: timeout: command did not end within --timeout 50ms") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
}

func TestExecuteSignals(t *testing.T) {
	tests := []struct {
		name string
		sigs []os.Signal
		// forwarded: signals the remote command gets before vers ends.
		forwarded int
	}{
		{"SIGTERM ends at once", []os.Signal{syscall.SIGTERM}, 0},
		{"SIGHUP ends at once", []os.Signal{syscall.SIGHUP}, 0},
		{"Ctrl-C goes to the command, a second ends vers", []os.Signal{os.Interrupt, os.Interrupt}, 1},
		{"Ctrl-C then SIGTERM", []os.Signal{os.Interrupt, syscall.SIGTERM}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			forwarded := make(chan int, 4)
			e.d.exec = blockingExec(forwarded)
			sigs := make(chan os.Signal)
			var opts *ExecuteOptions
			// The real run, with signals from the test instead of the process.
			cmd := NewCmdExecute(e.f, func(ctx context.Context, o *ExecuteOptions) error {
				opts = o
				o.Signals = func() (<-chan os.Signal, func()) { return sigs, func() {} }
				return runExecute(ctx, o)
			})
			root := NewRoot(e.f)
			root.RemoveCommand(root.Commands()...)
			root.AddCommand(cmd)
			root.SetArgs([]string{"execute", "sleep 100"})
			done := make(chan error, 1)
			go func() { done <- root.Execute() }()
			for i, s := range tt.sigs {
				select {
				case sigs <- s:
				case err := <-done:
					t.Fatalf("vers ended before the signal: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("vers does not take signals")
				}
				if i < tt.forwarded {
					select {
					case got := <-forwarded:
						if got != int(syscall.SIGINT) {
							t.Fatalf("forwarded %d", got)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("the signal did not reach the command")
					}
				}
			}
			select {
			case err := <-done:
				if code := ExitCode(err); code != ExitSession || !strings.Contains(err.Error(), "cancelled: ended by") {
					t.Fatalf("exit %d: %v", code, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("vers did not end on the signal")
			}
			if opts == nil {
				t.Fatal("run was not reached")
			}
			if len(forwarded) != 0 {
				t.Fatalf("forwarded more than %d", tt.forwarded)
			}
		})
	}
}

func TestKill(t *testing.T) {
	e := newEnv(t)
	if code := e.run("kill", ""); code != ExitUsage || !strings.Contains(e.errOut.String(), "alias, id or a unique id prefix") {
		t.Fatalf("kill \"\": exit %d: %s", code, e.errOut)
	}
	if code := e.run("kill", "no-such-vm"); code != ExitNotFound {
		t.Fatalf("kill no-such-vm: exit %d: %s", code, e.errOut)
	}
	e.d.deleteErr = fmt.Errorf("vm db-root has 1 children; use -r: %w", errdefs.ErrConflict)
	if code := e.run("kill", "db-root"); code != ExitConflict || !strings.Contains(e.errOut.String(), "use -r") {
		t.Fatalf("kill with children: exit %d: %s", code, e.errOut)
	}
	e.d.deleteErr = nil
	if code := e.run("kill", "db-root"); code != 0 || e.out.String() != "Killed db-root ("+rootID+")\n" {
		t.Fatalf("kill db-root: exit %d: %q %s", code, e.out, e.errOut)
	}
	if e.head() != headID {
		t.Fatal("killing another VM changed HEAD")
	}
	// Killing HEAD clears it, so it cannot name a stranger later.
	if code := e.run("kill", "head-vm", "--format", "json"); code != 0 {
		t.Fatalf("kill head-vm: exit %d: %s", code, e.errOut)
	}
	var res api.DeleteVMResponse
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil || len(res.Deleted) != 1 || res.Deleted[0] != headID {
		t.Fatalf("json %q: %v", e.out, err)
	}
	if e.head() != "" {
		t.Fatalf("HEAD still %s", e.head())
	}
}

func TestRunValidatesBeforeBuilding(t *testing.T) {
	e := newEnv(t)
	run := e.run
	e.d.validateErr = &client.Error{Code: api.CodeInvalid, Message: "mem_size_mib must be a positive number of MiB, got 0"}
	if code := run("run", "--mem-size-mib", "0"); code != ExitInvalid {
		t.Fatalf("exit %d", code)
	}
	if len(e.d.builds) != 0 || len(e.d.created) != 0 || strings.Contains(e.errOut.String(), "Booting") {
		t.Fatalf("built %v, created %v, stderr %q after a refused validation", e.d.builds, e.d.created, e.errOut)
	}
	if len(e.d.validated) != 1 || e.d.validated[0].MemMiB != 0 {
		t.Fatalf("validated %+v", e.d.validated)
	}

	e.d.validateErr = nil
	if code := run("run", "--vm-alias", "fresh", "--vcpu-count", "2"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	req := e.d.created[0]
	if len(e.d.builds) != 2 || req.Alias != "fresh" || req.VCPUs != 2 || req.MemMiB != 512 || req.Kernel != "default.bin" {
		t.Fatalf("built %v, created %+v", e.d.builds, req)
	}
	if !strings.Contains(e.errOut.String(), "Booting VM (512 MiB, 2 vCPU") || !strings.Contains(e.out.String(), "HEAD -> fresh") {
		t.Fatalf("stderr %q stdout %q", e.errOut, e.out)
	}
	if v, _ := e.d.find("fresh"); e.head() != v.ID {
		t.Fatalf("HEAD %s, want the new VM %s", e.head(), v.ID)
	}
}

// TestRunRefusesAfterBuildingBeforeBooting: what only a built image tells
// (its size) is refused before "Booting" is printed.
func TestRunRefusesAfterBuildingBeforeBooting(t *testing.T) {
	e := newEnv(t)
	e.d.validateErrBuilt = &client.Error{Code: api.CodeInvalid, Message: "fs_size_vm_mib 16 is smaller than the \"default\" image"}
	if code := e.run("run", "--fs-size-vm-mib", "16"); code != ExitInvalid {
		t.Fatalf("exit %d", code)
	}
	if len(e.d.created) != 0 || strings.Contains(e.errOut.String(), "Booting") {
		t.Fatalf("created %v, stderr %q", e.d.created, e.errOut)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	if code := e.run("status"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	want := "  VM             STATE    ID\n" +
		"* head-vm        running  " + headID + "\n" +
		"  db-root        running  " + rootID + "\n" +
		"  └─ (33333333)  running  " + otherID + "\n"
	if e.out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", e.out, want)
	}
	if code := e.run("status", "db-root", "--format", "json"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var one StatusVM
	if err := json.Unmarshal(e.out.Bytes(), &one); err != nil || one.ID != rootID || one.Head {
		t.Fatalf("%q: %v", e.out, err)
	}
	if code := e.run("status", "-q"); code != 0 || e.out.String() != headID+"\n"+rootID+"\n"+otherID+"\n" {
		t.Fatalf("-q: %d %q", code, e.out)
	}
	if code := e.run("status", "nope"); code != ExitNotFound {
		t.Fatalf("status nope: exit %d", code)
	}
	e.proj.SetHead("99999999-gone")
	e.run("status")
	if !strings.Contains(e.out.String(), "HEAD names 99999999-gone, which no longer exists") {
		t.Fatalf("stale HEAD not reported: %s", e.out)
	}
}

func TestCheckout(t *testing.T) {
	e := newEnv(t)
	if code := e.run("checkout"); code != 0 || e.out.String() != "HEAD -> head-vm ("+headID+", running)\n" {
		t.Fatalf("checkout: %d %q", code, e.out)
	}
	if code := e.run("checkout", "22222"); code != 0 || e.head() != rootID {
		t.Fatalf("checkout prefix: %d, HEAD %s: %s", code, e.head(), e.errOut)
	}
	if code := e.run("checkout", "nope"); code != ExitNotFound || e.head() != rootID {
		t.Fatalf("checkout nope: %d, HEAD %s", code, e.head())
	}
	if code := e.run("checkout", ""); code != ExitUsage || !strings.Contains(e.errOut.String(), "alias, id or a unique id prefix") {
		t.Fatalf("checkout \"\": %d %s", code, e.errOut)
	}
	e.proj.SetHead("99999999-gone")
	if code := e.run("checkout"); code != ExitNotFound || !strings.Contains(e.errOut.String(), "no longer exists") {
		t.Fatalf("stale HEAD: %d %s", code, e.errOut)
	}
}

func TestBranch(t *testing.T) {
	e := newEnv(t)
	if code := e.run("branch", "--alias", "try-a"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if len(e.d.branched) != 1 || e.d.branched[0] != headID || e.head() != headID {
		t.Fatalf("branched %v, HEAD %s", e.d.branched, e.head())
	}
	if !strings.Contains(e.out.String(), "Branched head-vm -> try-a") || !strings.Contains(e.out.String(), "Parent paused 12.5 ms") {
		t.Fatalf("out %q", e.out)
	}
	if code := e.run("branch", "db-root", "-c"); code != 0 || e.head() != "child0-"+rootID {
		t.Fatalf("-c: exit %d, HEAD %s", code, e.head())
	}
	if code := e.run("branch", "db-root", "--count", "3", "--format", "json"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var res api.BranchResponse
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil || len(res.Children) != 3 {
		t.Fatalf("json %q: %v", e.out, err)
	}
	e.d.branchErr = fmt.Errorf("vm is dead: %w", errdefs.ErrConflict)
	if code := e.run("branch", "db-root"); code != ExitConflict {
		t.Fatalf("conflict: exit %d", code)
	}
	e.proj.SetHead("99999999-gone")
	if code := e.run("branch"); code != ExitNotFound || !strings.Contains(e.errOut.String(), "HEAD names VM 99999999-gone") {
		t.Fatalf("stale HEAD: %d %s", code, e.errOut)
	}
}

func TestCopyNamesNoPath(t *testing.T) {
	for _, args := range [][]string{{"file", ":"}, {"db-root:", "out"}} {
		e := newEnv(t)
		if code := e.run(append([]string{"cp"}, args...)...); code != ExitUsage || !strings.Contains(e.errOut.String(), "write VM:/path/in/vm") {
			t.Errorf("cp %q: exit %d: %s", args, code, e.errOut)
		}
	}
}
