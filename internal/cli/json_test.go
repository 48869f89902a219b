package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

// decodeStrict decodes b, one JSON value, into v, refusing fields v's type
// does not have: the output is that type, not merely some JSON.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON value")
	}
	return nil
}

// TestFormatJSON: every command that reports something prints, with
// --format json, exactly one value of its type on stdout, and nothing on
// stderr.
func TestFormatJSON(t *testing.T) {
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "in.txt")
	os.WriteFile(hostFile, []byte("hello"), 0o644)
	archive := filepath.Join(dir, "a.tar")
	tests := []struct {
		args []string
		into func() any
	}{
		{[]string{"commit", "rm", commitB}, func() any { return &api.RemoveCommitsResponse{} }},
		{[]string{"run", "--vm-alias", "new"}, func() any { return &api.VM{} }},
		{[]string{"branch", "--alias", "kid"}, func() any { return &api.BranchResponse{} }},
		{[]string{"status"}, func() any { return &[]StatusVM{} }},
		{[]string{"status", "db-root"}, func() any { return &StatusVM{} }},
		{[]string{"info"}, func() any { return &api.VMInfo{} }},
		{[]string{"info", "db-root"}, func() any { return &api.VMInfo{} }},
		{[]string{"checkout"}, func() any { return &api.Checkout{} }},
		{[]string{"checkout", "db-root"}, func() any { return &api.Checkout{} }},
		{[]string{"kill", otherID}, func() any { return &api.DeleteVMResponse{} }},
		{[]string{"cp", hostFile, ":/tmp/in.txt"}, func() any { return &api.CopyResult{} }},
		{[]string{"image", "ls"}, func() any { return &[]api.Image{} }},
		{[]string{"image", "build"}, func() any { return &[]api.Image{} }},
		{[]string{"pause"}, func() any { return &api.VM{} }},
		{[]string{"resume"}, func() any { return &api.VM{} }},
		{[]string{"commit"}, func() any { return &api.CommitResponse{} }},
		{[]string{"commit", "ls"}, func() any { return &[]api.Commit{} }},
		{[]string{"commit", "history", "db-ready"}, func() any { return &[]api.Commit{} }},
		{[]string{"commit", "du"}, func() any { return &api.Usage{} }},
		{[]string{"commit", "gc"}, func() any { return &api.GCResponse{} }},
		{[]string{"commit", "export", "db-ready", "-o", archive}, func() any { return &api.ExportResult{} }},
		{[]string{"commit", "import", archive}, func() any { return &api.ImportResponse{} }},
		{[]string{"tag", "ls"}, func() any { return &[]api.Tag{} }},
		{[]string{"tag", "create", "v1", "db-ready"}, func() any { return &api.Tag{} }},
		{[]string{"tag", "mv", "v1", commitB}, func() any { return &api.Tag{} }},
		{[]string{"tag", "rm", "db-ready"}, func() any { return &api.RemoveTagsResult{} }},
		{[]string{"run-commit", commitA[:12]}, func() any { return &api.RunCommitResponse{} }},
		{[]string{"sleep"}, func() any { return &api.VM{} }},
		{[]string{"wake"}, func() any { return &api.VM{} }},
		{[]string{"restore", commitA[:12]}, func() any { return &api.VM{} }},
	}
	e := newEnv(t)
	e.withCommits()
	e.d.archive = []byte("archive")
	e.d.acceptFiles = true
	for _, tt := range tests {
		args := append(tt.args, "--format", "json")
		if code := e.run(args...); code != 0 {
			t.Fatalf("vers %q: exit %d: %s", args, code, e.errOut)
		}
		v := tt.into()
		if err := decodeStrict(e.out.Bytes(), v); err != nil {
			t.Errorf("vers %q: stdout %q is no %T: %v", args, e.out, v, err)
		}
		if e.errOut.Len() != 0 {
			t.Errorf("vers %q: stderr %q", args, e.errOut)
		}
	}
}

// TestFormatJSONErrors: a command given --format json that fails prints
// the error object on stderr, with the code of its kind, and exits as it
// does without --format json.
func TestFormatJSONErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		kind string
	}{
		{[]string{"status", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"info", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"kill", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"checkout", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"branch", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"pause", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"commit", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"commit", "history", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"run-commit", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"tag", "rm", "nope"}, ExitNotFound, api.CodeNotFound},
		{[]string{"image", "build", "nope"}, ExitInvalid, api.CodeInvalid},
		{[]string{"kill", "db-root"}, ExitConflict, api.CodeConflict},
		{[]string{"status", "a", "b"}, ExitUsage, api.CodeInvalid},
		{[]string{"info", "--bogus"}, ExitUsage, api.CodeInvalid},
		{[]string{"cp", ":/etc/x", "-"}, ExitUsage, api.CodeInvalid},
		{[]string{"commit", "export", "db-ready", "-o", "-"}, ExitUsage, api.CodeInvalid},
		{[]string{"commit", "gc", "--keep-last", "-1"}, ExitUsage, api.CodeInvalid},
	}
	e := newEnv(t)
	e.withCommits()
	e.d.deleteErr = conflict("vm %q has children; use -r", "db-root")
	for _, tt := range tests {
		if _, onlyJSON := jsonOnly[tt.args[len(tt.args)-1]]; onlyJSON {
			// A usage error only with --format json: nothing to compare.
		} else if code := e.run(tt.args...); code != tt.code || !strings.Contains(e.errOut.String(), "vers: ") {
			t.Errorf("vers %q: exit %d, stderr %q; want exit %d", tt.args, code, e.errOut, tt.code)
		}
		args := append(tt.args, "--format", "json")
		if code := e.run(args...); code != tt.code {
			t.Errorf("vers %q: exit %d; want %d", args, code, tt.code)
		}
		var got api.CLIError
		if err := decodeStrict(e.errOut.Bytes(), &got); err != nil || got.Error.Code != tt.kind || got.Error.Message == "" {
			t.Errorf("vers %q: stderr %q (%v); want code %q", args, e.errOut, err, tt.kind)
		}
		if e.out.Len() != 0 {
			t.Errorf("vers %q: stdout %q", args, e.out)
		}
	}
}

// jsonOnly are the last words of the commands above that are refused only
// with --format json (which stdout then could not hold).
var jsonOnly = map[string]struct{}{"-": {}}

// TestQuiet: list commands print one id (tags and images: one name) a line.
func TestQuiet(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"status", "-q"}, headID + "\n" + rootID + "\n" + otherID + "\n"},
		{[]string{"commit", "ls", "-q"}, commitA + "\n" + commitB + "\n"},
		{[]string{"tag", "ls", "-q"}, "db-ready\n"},
		{[]string{"image", "ls", "-q"}, "default.bin\ndefault\n"},
	}
	for _, tt := range tests {
		if code := e.run(tt.args...); code != 0 || e.out.String() != tt.want {
			t.Errorf("vers %q: exit %d, stdout %q; want %q", tt.args, code, e.out, tt.want)
		}
	}
}

// TestCancelledExitCode: whatever a cancellation is wrapped in, it is exit
// 7 and code "cancelled"; a command whose context ends, and one that gets
// SIGTERM or SIGHUP while it waits for versd, exits 7.
func TestCancelledExitCode(t *testing.T) {
	for _, err := range []error{
		context.Canceled,
		&url.Error{Op: "Get", URL: "http://versd/v1/vms", Err: context.Canceled},
		fmt.Errorf("commit interrupted: %w", errCancelled),
		stopped(cancelledCtx(), "sleep", errors.New("connection reset")),
		imageError("default", context.Canceled),
	} {
		if got := ExitCode(err); got != ExitCancelled || errorCode(err) != api.CodeCancelled {
			t.Errorf("%v: exit %d, code %q", err, got, errorCode(err))
		}
	}
	if got := ExitCode(fmt.Errorf("x: %w", errdefs.ErrTimeout)); got != ExitTimeout {
		t.Errorf("timeout: exit %d", got)
	}

	e := newEnv(t)
	if code := Main(cancelledCtx(), e.f, []string{"status", "--format", "json"}); code != ExitCancelled ||
		!strings.Contains(e.errOut.String(), `"code":"cancelled"`) {
		t.Fatalf("status with an ended context: exit %d, stderr %q", code, e.errOut)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		for _, args := range [][]string{{"status"}, {"info"}, {"kill", rootID}, {"checkout", "db-root"}, {"pause"}} {
			e := newEnv(t)
			e.d.hang = make(chan struct{})
			done := make(chan int, 1)
			go func() { done <- Main(context.Background(), e.f, args) }()
			select {
			case <-e.d.hang:
			case <-time.After(10 * time.Second):
				t.Fatalf("vers %q did not ask versd", args)
			}
			syscall.Kill(os.Getpid(), sig)
			select {
			case code := <-done:
				if code != ExitCancelled {
					t.Errorf("vers %q on %v: exit %d: %s", args, sig, code, e.errOut)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("vers %q did not end on %v", args, sig)
			}
		}
	}
}

func cancelledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestInfoText: the readable block names what a script would read.
func TestInfoText(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"info", "db-root"}, "Children:    "+otherID, "")
	for _, want := range []string{"ID:          " + rootID, "Accelerator", "300 MiB PSS", "chain of 2 file(s)", "none since versd started"} {
		if want == "Accelerator" {
			want = "tcg"
		}
		if !strings.Contains(e.out.String(), want) {
			t.Errorf("info lacks %q:\n%s", want, e.out)
		}
	}
	if !strings.Contains(e.out.String(), "Last branch: 1 child, paused 12.5 ms; first child ready in 310 ms, all in 420 ms") {
		t.Errorf("info lacks the last branch's figures:\n%s", e.out)
	}
	e.expect(0, []string{"info", otherID}, "branch of "+rootID, "")
	if strings.Contains(e.out.String(), "Last branch") {
		t.Errorf("a VM never branched has a last branch:\n%s", e.out)
	}
}

// TestExecuteJSON: execute --format json prints one object once the command
// has exited, and exits with its code; vers's own failures are the error
// object and 255; words after the command's first are the command's.
func TestExecuteJSON(t *testing.T) {
	e := newEnv(t)
	e.d.exec = func(ctx context.Context, ref string, req api.ExecRequest, s client.ExecIO) (api.ExecControl, error) {
		fmt.Fprint(s.Stdout, "out\n")
		fmt.Fprint(s.Stderr, "err\n")
		return api.ExecControl{Type: "exit", ExitCode: 3}, nil
	}
	if code := e.run("execute", "--format", "json", "db-root", "make test"); code != 3 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	var res api.ExecResult
	if err := decodeStrict(e.out.Bytes(), &res); err != nil || res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" || e.errOut.Len() != 0 {
		t.Fatalf("stdout %q (%v), stderr %q", e.out, err, e.errOut)
	}
	for _, tt := range []struct {
		args []string
		kind string
	}{
		{[]string{"execute", "--format", "json", "nope", "--", "ls"}, api.CodeNotFound},
		{[]string{"execute", "--format", "json"}, api.CodeInvalid},
		{[]string{"execute", "--format", "yaml", "ls"}, api.CodeInvalid},
		{[]string{"execute", "--format", "json", "--timeout", "-1s", "ls"}, api.CodeInvalid},
	} {
		code := e.run(tt.args...)
		var got api.CLIError
		err := decodeStrict(e.errOut.Bytes(), &got)
		if tt.args[2] == "yaml" {
			err = nil // not JSON: the text error
			got.Error.Code = api.CodeInvalid
		}
		if code != ExitSession || err != nil || got.Error.Code != tt.kind || strings.HasPrefix(got.Error.Message, tt.kind) {
			t.Errorf("vers %q: exit %d, stderr %q (%v); want 255 and code %s", tt.args, code, e.errOut, err, tt.kind)
		}
	}
	if code := e.run("execute", "ls", "--format", "json"); code != 3 || !strings.Contains(e.out.String(), "out") || strings.Contains(e.out.String(), "exit_code") {
		t.Fatalf("the command's own --format: exit %d, stdout %q", code, e.out)
	}
}
