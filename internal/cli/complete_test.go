package cli

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vers/internal/paths"
)

// completions runs `vers __complete args...` (what the shell scripts of
// `vers completion` run) and returns the candidates, without their
// descriptions, and the directive line.
func (e *env) completions(args ...string) ([]string, string) {
	e.t.Helper()
	if code := e.run(append([]string{"__complete"}, args...)...); code != 0 {
		e.t.Fatalf("__complete %q: exit %d: %s", args, code, e.errOut)
	}
	var names []string
	directive := ""
	for _, line := range strings.Split(strings.TrimSpace(e.out.String()), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		name, _, _ := strings.Cut(line, "\t")
		names = append(names, name)
	}
	return names, directive
}

func TestCompletion(t *testing.T) {
	vms := []string{"head-vm", "db-root", otherID}
	commits := []string{"db-ready", shortCommit(commitA), shortCommit(commitB)}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"kill", ""}, vms},
		{[]string{"kill", "db-root", ""}, nil},
		{[]string{"execute", ""}, vms},
		{[]string{"execute", "--timeout", "5s", "-i", "-e", "A=1", "d"}, []string{"db-root"}},
		{[]string{"execute", "db-root", ""}, nil},
		{[]string{"execute", "--", ""}, nil},
		{[]string{"connect", "h"}, []string{"head-vm"}},
		{[]string{"status", "3333"}, []string{otherID}},
		{[]string{"status", "1111"}, []string{headID}},
		{[]string{"checkout", ""}, vms},
		{[]string{"pause", ""}, vms},
		{[]string{"resume", ""}, vms},
		{[]string{"sleep", ""}, vms},
		{[]string{"wake", ""}, vms},
		{[]string{"branch", "d"}, []string{"db-root", "db-ready"}},
		{[]string{"restore", "db-"}, []string{"db-root", "db-ready"}},
		{[]string{"restore", "db-root", ""}, commits},
		{[]string{"run-commit", ""}, commits},
		{[]string{"run-commit", "3f9"}, []string{shortCommit(commitA)}},
		{[]string{"run-commit", commitA[:14]}, []string{commitA}},
		{[]string{"commit", "history", ""}, commits},
		{[]string{"commit", "export", ""}, commits},
		{[]string{"commit", "rm", shortCommit(commitA), ""}, commits},
		{[]string{"tag", "create", "new", ""}, commits},
		{[]string{"tag", "create", ""}, nil},
		{[]string{"tag", "mv", ""}, []string{"db-ready"}},
		{[]string{"tag", "rm", "x", "db"}, []string{"db-ready"}},
		{[]string{"tunnel", "d"}, []string{"db-root"}},
		{[]string{"tunnel", "db-root", ""}, nil},
		{[]string{"cp", "db"}, []string{"db-root:"}},
		{[]string{"cp", "db-root:/"}, nil},
	}
	for _, tt := range tests {
		e := newEnv(t)
		e.withCommits()
		got, _ := e.completions(tt.args...)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.args, got, tt.want)
		}
	}
	e := newEnv(t)
	if got, _ := e.completions("commit", ""); !slices.Contains(got, "ls") || !slices.Contains(got, "db-root") {
		t.Errorf("commit: %q; want its subcommands and the VMs", got)
	}
	if _, directive := e.completions("cp", "./fi"); directive != ":0" {
		t.Errorf("cp of a host path: directive %s, want file completion", directive)
	}
}

// TestCompletionWithoutDaemon: completion asks only a daemon that runs,
// starts none, and answers at once with nothing and without a word on
// stderr, whether no socket exists or one that nothing serves.
func TestCompletionWithoutDaemon(t *testing.T) {
	home, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	layout := paths.Layout{Home: home}
	for _, socketLeft := range []bool{false, true} {
		if socketLeft {
			ln, err := net.Listen("unix", layout.Socket())
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
		}
		e := newEnv(t)
		e.f.client, e.f.Layout = nil, layout
		start := time.Now()
		got, directive := e.completions("kill", "")
		if len(got) != 0 || directive != ":4" || time.Since(start) > completionTimeout {
			t.Errorf("socket left %v: %q %s in %s", socketLeft, got, directive, time.Since(start))
		}
		if strings.Contains(e.errOut.String(), "versd") || strings.Contains(e.errOut.String(), "vers:") {
			t.Errorf("socket left %v: stderr %q", socketLeft, e.errOut)
		}
		if entries, _ := filepath.Glob(filepath.Join(home, "versd.*")); len(entries) > 1 || (!socketLeft && len(entries) > 0) {
			t.Errorf("socket left %v: completion touched the home: %v", socketLeft, entries)
		}
	}
}
