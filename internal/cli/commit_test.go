package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

// withCommits gives the env's daemon two commits: A (tag db-ready, from
// db-root) and its parent B.
func (e *env) withCommits() {
	now := time.Now()
	e.d.commits = []api.Commit{
		{ID: commitA, Kind: api.CommitKindCommit, SourceVM: rootID, SourceAlias: "db-root", Parent: commitB,
			CreatedAt: now.Add(-2 * time.Hour), LogicalBytes: 1288490189, AddedBytes: 84 << 20},
		{ID: commitB, Kind: api.CommitKindCommit, SourceVM: rootID,
			CreatedAt: now.Add(-3 * 24 * time.Hour), LogicalBytes: 1 << 30, AddedBytes: 1 << 30},
	}
	e.d.tags = []api.Tag{{Name: "db-ready", Commit: commitA, CreatedAt: now.Add(-time.Hour)}}
}

// expect checks an exit code and that stdout and stderr contain the texts.
func (e *env) expect(code int, args []string, out, errOut string) {
	e.t.Helper()
	got := e.run(args...)
	if got != code || !strings.Contains(e.out.String(), out) || !strings.Contains(e.errOut.String(), errOut) {
		e.t.Fatalf("vers %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
			args, got, e.out, e.errOut, code, out, errOut)
	}
}

func TestCommit(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"commit"}, "", "Committing "+headID)
	want := "Committed 000000000001: 1.2 GiB logical, 84 MiB added, paused 13.2 ms, 3.4 s\n"
	if e.out.String() != want || len(e.d.committed) != 1 || e.d.committed[0].Ref != headID {
		t.Fatalf("stdout %q, commits %+v", e.out, e.d.committed)
	}
	e.expect(0, []string{"commit", "db-root", "--tag", "db-ready", "-m", "seeded"}, "Committed 000000000002 (tag db-ready): ", "")
	if got := e.d.committed[1]; got.Ref != "db-root" || got.Req != (api.CommitRequest{Tag: "db-ready", Message: "seeded"}) {
		t.Fatalf("asked %+v", got)
	}
	e.expect(0, []string{"commit", "db-root", "--format", "json"}, "", "")
	var res api.CommitResponse
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil || len(res.Commit.ID) != 64 || res.PauseMillis != 13.2 || res.TotalMillis != 3400 {
		t.Fatalf("json %q: %v", e.out, err)
	}
	if e.errOut.Len() != 0 {
		t.Fatalf("json run wrote progress %q", e.errOut)
	}
	e.expect(0, []string{"commit", "-q"}, "", "")
	if id := strings.TrimSpace(e.out.String()); len(id) != 64 || e.errOut.Len() != 0 {
		t.Fatalf("-q: %q %q", e.out, e.errOut)
	}

	e.expect(ExitConflict, []string{"commit", "--tag", "db-ready"}, "", `tag "db-ready" exists`)
	e.expect(ExitNotFound, []string{"commit", "nope"}, "", `no VM "nope"`)
	e.expect(ExitUsage, []string{"commit", "a", "b"}, "", "accepts at most 1 arg")
	e.expect(ExitUsage, []string{"commit", "--format", "xml"}, "", "use text or json")
	e.d.commitErr = fmt.Errorf("the host's disk is full: %w", errdefs.ErrNoSpace)
	e.expect(ExitNoSpace, []string{"commit"}, "", "disk is full")
	e.proj.SetHead("99999999-gone")
	e.expect(ExitNotFound, []string{"commit"}, "", "HEAD names VM 99999999-gone")
}

// TestCommitSubcommandsWin: `vers commit ls` lists, `vers commit myvm`
// commits myvm, `vers commit -- ls` commits a VM called ls.
func TestCommitSubcommandsWin(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.expect(0, []string{"commit", "ls"}, "3f9a2c1b7e4d", "")
	e.expect(0, []string{"commit", "history", "db-ready"}, "7c41d09e2b3a", "")
	if len(e.d.committed) != 0 {
		t.Fatalf("a subcommand committed %+v", e.d.committed)
	}
	e.expect(0, []string{"commit", "db-root"}, "Committed", "")
	e.d.vms = append(e.d.vms, api.VM{ID: "44444444-ls", Alias: "ls", State: api.StateRunning})
	e.expect(0, []string{"commit", "--", "ls"}, "Committed", "")
	if refs := []string{e.d.committed[0].Ref, e.d.committed[1].Ref}; !slices.Equal(refs, []string{"db-root", "ls"}) {
		t.Fatalf("committed %v", refs)
	}
}

func TestCommitLs(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"commit", "ls"}, "No commits. `vers commit` makes one of HEAD.", "")
	e.withCommits()
	e.expect(0, []string{"commit", "ls"}, "", "")
	want := "ID            TAGS      SOURCE    PARENT        CREATED  SIZE     ADDED\n" +
		"3f9a2c1b7e4d  db-ready  db-root   7c41d09e2b3a  2h ago   1.2 GiB  84 MiB\n" +
		"7c41d09e2b3a  -         22222222  -             3d ago   1.0 GiB  1.0 GiB\n"
	if e.out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", e.out, want)
	}
	e.expect(0, []string{"commit", "ls", "-q"}, "", "")
	if e.out.String() != commitA+"\n"+commitB+"\n" {
		t.Fatalf("-q: %q", e.out)
	}
	e.expect(0, []string{"commit", "ls", "--format", "json"}, "", "")
	var list []api.Commit
	if err := json.Unmarshal(e.out.Bytes(), &list); err != nil || len(list) != 2 || list[0].ID != commitA || !slices.Equal(list[0].Tags, []string{"db-ready"}) {
		t.Fatalf("json %q: %v", e.out, err)
	}
	e.expect(ExitUsage, []string{"commit", "ls", "extra"}, "", "unknown command")
}

func TestCommitHistory(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.expect(0, []string{"commit", "history", "3f9a", "-q"}, "", "")
	if e.out.String() != commitA+"\n"+commitB+"\n" {
		t.Fatalf("-q: %q", e.out)
	}
	e.expect(0, []string{"commit", "history", "db-ready", "--format", "json"}, commitB, "")
	e.expect(ExitNotFound, []string{"commit", "history", "no-such"}, "", `no commit or tag "no-such"`)
	e.expect(ExitUsage, []string{"commit", "history"}, "", "accepts 1 arg")
	e.expect(ExitUsage, []string{"commit", "history", ""}, "", "the commit is empty")
}

func TestCommitRm(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	// All or nothing: an unknown one keeps the others.
	e.expect(ExitNotFound, []string{"commit", "rm", "db-ready", "no-such"}, "", `no commit or tag "no-such"`)
	e.d.commits[1].NeededBy = []string{"sleepy"}
	e.expect(ExitConflict, []string{"commit", "rm", "db-ready", "7c41"}, "", "needed by VM sleepy")
	if len(e.d.commits) != 2 {
		t.Fatalf("removed some: %v", e.d.commits)
	}
	e.expect(0, []string{"commit", "rm", "db-ready"}, "Removed commit 3f9a2c1b7e4d\n", "")
	e.d.commits[0].NeededBy = nil
	e.expect(0, []string{"commit", "rm", "7c41", "--format", "json"}, `{"removed":["`+commitB+`"]}`, "")
	e.expect(ExitUsage, []string{"commit", "rm"}, "", "requires at least 1 arg")
}

func TestCommitGCFlags(t *testing.T) {
	tests := []struct {
		args      []string
		code      int
		olderThan time.Duration
		keep      int
		msg       string
	}{
		{nil, 0, 0, 0, ""},
		{[]string{"--older-than", "7d"}, 0, 7 * 24 * time.Hour, 0, ""},
		{[]string{"--older-than", "36h", "--keep-last", "3"}, 0, 36 * time.Hour, 3, ""},
		{[]string{"--older-than", "1d12h"}, 0, 36 * time.Hour, 0, ""},
		{[]string{"--older-than", "soon"}, ExitUsage, 0, 0, `"soon" is not a duration: write it like 7d, 36h`},
		{[]string{"--older-than", "7days"}, ExitUsage, 0, 0, "is not a duration"},
		{[]string{"--older-than", "-1h"}, ExitUsage, 0, 0, "give at least 1s"},
		{[]string{"--older-than", "500ms"}, ExitUsage, 0, 0, "give at least 1s"},
		{[]string{"--keep-last", "-1"}, ExitUsage, 0, 0, "give 0 or more"},
		{[]string{"--keep-last", "x"}, ExitUsage, 0, 0, "invalid argument"},
	}
	for _, tt := range tests {
		f, _, _ := testFactory()
		var got *CommitGCOptions
		err := runCmd(f, NewCmdCommitGC(f, func(_ context.Context, o *CommitGCOptions) error { got = o; return nil }), tt.args...)
		if code := ExitCode(err); code != tt.code || (err != nil && !strings.Contains(message(err), tt.msg)) {
			t.Errorf("%q: exit %d (%v), want %d with %q", tt.args, code, err, tt.code, tt.msg)
			continue
		}
		if tt.code == 0 && (got.OlderThan != tt.olderThan || got.KeepLast != tt.keep) {
			t.Errorf("%q: got %+v", tt.args, got)
		}
	}
}

// runCmd runs cmd alone under a root, as `vers NAME args...`.
func runCmd(f *Factory, cmd *cobra.Command, args ...string) error {
	root := NewRoot(f)
	root.RemoveCommand(root.Commands()...)
	root.AddCommand(cmd)
	root.SetArgs(append([]string{cmd.Name()}, args...))
	return root.Execute()
}

func TestCommitGC(t *testing.T) {
	e := newEnv(t)
	e.d.gcRes = api.GCResponse{Removed: []string{commitB}, FreedBytes: 1 << 30, FreedChunk: 12}
	e.expect(0, []string{"commit", "gc", "--older-than", "7d", "--keep-last", "2", "--dry-run"},
		"Would remove commit 7c41d09e2b3a\nWould remove 1 commit(s); would free 1.0 GiB in 12 chunk(s).\n", "")
	if want := (api.GCRequest{KeepLast: 2, OlderThanSeconds: 7 * 24 * 3600, DryRun: true}); e.d.gcs[0] != want {
		t.Fatalf("asked %+v, want %+v", e.d.gcs[0], want)
	}
	e.expect(0, []string{"commit", "gc"}, "Removed 1 commit(s); freed 1.0 GiB in 12 chunk(s).", "")
	e.expect(0, []string{"commit", "gc", "--format", "json"}, `"freed_chunks":12`, "")
	e.d.gcRes = api.GCResponse{}
	e.expect(0, []string{"commit", "gc", "--format", "json"}, `"removed":[]`, "")
	e.expect(ExitUsage, []string{"commit", "gc", "--older-than", "soon"}, "", "vers: --older-than: \"soon\" is not a duration")
}

func TestCommitDu(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"commit", "du"}, "0 commit(s): 0 B logical, 0 B on disk, 0 chunk(s)\n", "")
	e.withCommits()
	e.expect(0, []string{"commit", "du"}, "2 commit(s): 2.2 GiB logical, 1.1 GiB on disk (2.0x smaller), 20 chunk(s)\n\nID ", "")
	if !strings.Contains(e.out.String(), "3f9a2c1b7e4d  db-ready") {
		t.Fatalf("no per-commit lines: %s", e.out)
	}
	e.expect(0, []string{"commit", "du", "--format", "json"}, `"stored_bytes":1161822208`, "")
}

func TestCommitExport(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.d.archive = bytes.Repeat([]byte("tar!"), 1000)
	dir := t.TempDir()
	out := filepath.Join(dir, "db.tar")
	e.expect(0, []string{"commit", "export", "db-ready", "-o", out}, "", "Exported db-ready to "+out+" (3.9 KiB)")
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, e.d.archive) {
		t.Fatalf("file: %d bytes, %v", len(b), err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v: an archive holds a VM's memory", st.Mode())
	}
	// Cut short: the old file stays as it was, and nothing else is left.
	e.d.exportFail = fmt.Errorf("the archive arrived incomplete: versd ended it early")
	e.expect(ExitError, []string{"commit", "export", "db-ready", "-o", out}, "", "arrived incomplete")
	if b, _ := os.ReadFile(out); !bytes.Equal(b, e.d.archive) {
		t.Fatal("a failed export changed the file")
	}
	other := filepath.Join(dir, "other.tar")
	e.expect(ExitError, []string{"commit", "export", "db-ready", "-o", other}, "", "arrived incomplete")
	if names := dirNames(t, dir); !slices.Equal(names, []string{"db.tar"}) {
		t.Fatalf("left %v", names)
	}
	e.d.exportFail = nil
	e.expect(ExitNotFound, []string{"commit", "export", "no-such", "-o", other}, "", `no commit or tag "no-such"`)
	if names := dirNames(t, dir); !slices.Equal(names, []string{"db.tar"}) {
		t.Fatalf("left %v", names)
	}
	e.expect(0, []string{"commit", "export", "db-ready", "-o", "-"}, "", "to standard output")
	if !bytes.Equal(e.out.Bytes(), e.d.archive) {
		t.Fatalf("stdout has %d bytes", e.out.Len())
	}
	e.expect(ExitUsage, []string{"commit", "export", "db-ready"}, "", "-o FILE, or -o - for standard output")
	e.expect(ExitInvalid, []string{"commit", "export", "db-ready", "-o", dir}, "", "is a directory")
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCommitExportRefusesTerminal: an archive is never written to a terminal.
func TestCommitExportRefusesTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skip("no pty:", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	e := newEnv(t)
	e.withCommits()
	e.d.archive = []byte("tar!")
	e.f.Out = tty
	if code := e.run("commit", "export", "db-ready", "-o", "-"); code != ExitUsage || !strings.Contains(e.errOut.String(), "standard output is a terminal") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
}

func TestCommitImport(t *testing.T) {
	e := newEnv(t)
	e.f.In = bytes.NewBufferString("an archive")
	e.expect(0, []string{"commit", "import", "-"}, "Imported 7c41d09e2b3a: 2.0 GiB logical, 3.0 MiB added in 7 new chunk(s)\n", "")
	if len(e.d.imported) != 1 || string(e.d.imported[0]) != "an archive" {
		t.Fatalf("imported %q", e.d.imported)
	}
	file := filepath.Join(t.TempDir(), "db.tar")
	os.WriteFile(file, []byte("from a file"), 0o600)
	e.expect(0, []string{"commit", "import", file, "--format", "json"}, `"new_chunks":7`, "")
	if string(e.d.imported[1]) != "from a file" {
		t.Fatalf("imported %q", e.d.imported)
	}
	e.expect(ExitNotFound, []string{"commit", "import", file + ".missing"}, "", "no such file")
	e.expect(ExitInvalid, []string{"commit", "import", filepath.Dir(file)}, "", "is not an archive file")
	e.f.In = &bytes.Buffer{}
	e.expect(ExitInvalid, []string{"commit", "import", "-"}, "", "not an archive")
	e.expect(ExitUsage, []string{"commit", "import"}, "", "accepts 1 arg")
}

func TestRunCommit(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.expect(0, []string{"run-commit", "db-ready", "--vm-alias", "try-a"}, "", "Starting a VM from commit db-ready")
	v, err := e.d.find("try-a")
	if err != nil || e.head() != v.ID || v.OriginCommit != commitA {
		t.Fatalf("VM %+v (%v), HEAD %s", v, err, e.head())
	}
	want := "VM try-a is running: id " + v.ID + ", alias try-a (ready in 0.4s). HEAD -> try-a\n" +
		"From commit 3f9a2c1b7e4d (tag db-ready), restored in 120 ms.\n"
	if e.out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", e.out, want)
	}
	if got := e.d.runCommits[0]; got.Ref != "db-ready" || got.Req != (api.RunCommitRequest{Alias: "try-a", Count: 1}) {
		t.Fatalf("asked %+v", got)
	}
	e.expect(0, []string{"run-commit", "7c41", "--format", "json"}, "", "")
	var res api.RunCommitResponse
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil || res.Commit.ID != commitB || len(res.VMs) != 1 || e.head() != res.VMs[0].ID {
		t.Fatalf("json %q: %v", e.out, err)
	}
	e.expect(0, []string{"run-commit", "7c41", "-q"}, "-run\n", "")
	e.expect(ExitNotFound, []string{"run-commit", "no-such"}, "", `no commit or tag "no-such"`)
	e.expect(ExitUsage, []string{"run-commit"}, "", "accepts 1 arg")
	e.d.runCommitErr = fmt.Errorf("alias try-a is taken: %w", errdefs.ErrConflict)
	e.expect(ExitConflict, []string{"run-commit", "db-ready", "--vm-alias", "try-a"}, "", "is taken")

	// Outside a project the VM runs, with no HEAD to set.
	e.d.runCommitErr = nil
	e.f.WorkDir = t.TempDir()
	e.expect(0, []string{"run-commit", "db-ready"}, "(ready in 0.4s).\nFrom commit", "")
	if strings.Contains(e.out.String(), "HEAD") {
		t.Fatalf("out %q", e.out)
	}
}

// TestBranchCommit: `vers branch TAG` starts children from the commit
// when no VM has that name.
func TestBranchCommit(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.expect(0, []string{"branch", "db-ready", "--count", "2", "--alias", "t"}, "", "")
	if len(e.d.branched) != 0 || len(e.d.runCommits) != 1 || e.d.runCommits[0].Req != (api.RunCommitRequest{Alias: "t", Count: 2}) {
		t.Fatalf("branched %v, run %+v", e.d.branched, e.d.runCommits)
	}
	t1, _ := e.d.find("t-1")
	t2, _ := e.d.find("t-2")
	want := "Branched commit 3f9a2c1b7e4d (tag db-ready) -> t-1 (id " + t1.ID + ")\n" +
		"Branched commit 3f9a2c1b7e4d (tag db-ready) -> t-2 (id " + t2.ID + ")\n" +
		"Restored in 120 ms; first child ready in 400 ms, all 2 in 500 ms.\n"
	if e.out.String() != want || e.head() != headID {
		t.Fatalf("got\n%s\nwant\n%s(HEAD %s)", e.out, want, e.head())
	}
	e.expect(0, []string{"branch", "7c41", "-c"}, "HEAD -> ", "")
	if v, _ := e.d.find(e.head()); v.OriginCommit != commitB {
		t.Fatalf("HEAD %s is not the child", e.head())
	}
	e.expect(0, []string{"branch", "db-ready", "--format", "json"}, `"restore_ms":120`, "")

	// A VM of the name wins.
	e.d.tags = append(e.d.tags, api.Tag{Name: "db-root", Commit: commitB})
	e.expect(0, []string{"branch", "db-root"}, "Branched db-root -> ", "")
	e.expect(ExitNotFound, []string{"branch", "no-such"}, "", `no VM, commit or tag is named "no-such"`)
	// HEAD names a VM, never a commit.
	e.proj.SetHead(commitA)
	e.expect(ExitNotFound, []string{"branch"}, "", "HEAD names VM "+commitA)
}

func TestSleepWakeRestore(t *testing.T) {
	e := newEnv(t)
	e.withCommits()
	e.expect(0, []string{"sleep"}, "VM head-vm ("+headID+") is sleeping (", "")
	e.expect(0, []string{"status"}, "* head-vm        sleeping  ", "")
	e.expect(0, []string{"wake", "--format", "json"}, `"state":"running"`, "")
	e.expect(0, []string{"wake", "db-root"}, "VM db-root ("+rootID+") is running (woke in ", "")
	e.expect(0, []string{"restore", "db-ready"}, "VM head-vm ("+headID+") is back at commit db-ready and running", "")
	e.expect(0, []string{"restore", "db-root", "7c41"}, "VM db-root", "")
	want := []string{"sleep " + headID, "wake " + headID, "wake " + rootID, "restore " + headID + " db-ready", "restore " + rootID + " 7c41"}
	if !slices.Equal(e.d.verbs, want) {
		t.Fatalf("asked %q, want %q", e.d.verbs, want)
	}
	e.expect(ExitNotFound, []string{"restore", "no-such"}, "", `no commit or tag "no-such"`)
	e.expect(ExitNotFound, []string{"sleep", "nope"}, "", `no VM "nope"`)
	e.expect(ExitUsage, []string{"restore"}, "", "accepts between 1 and 2 arg")
	e.expect(ExitUsage, []string{"restore", "db-root", ""}, "", "the commit is empty")
	e.expect(ExitUsage, []string{"wake", "a", "b"}, "", "accepts at most 1 arg")
	e.d.verbErr = fmt.Errorf("vm head-vm is not sleeping: %w", errdefs.ErrConflict)
	e.expect(ExitConflict, []string{"wake"}, "", "is not sleeping")
	e.proj.SetHead("99999999-gone")
	e.expect(ExitNotFound, []string{"sleep"}, "", "HEAD names VM 99999999-gone")
}

func TestTag(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"tag", "ls"}, "No tags.", "")
	e.withCommits()
	e.expect(0, []string{"tag", "ls"}, "NAME      COMMIT        CREATED\ndb-ready  3f9a2c1b7e4d  1h ago\n", "")
	e.expect(0, []string{"tag", "ls", "-q"}, "db-ready\n", "")
	e.expect(0, []string{"tag", "ls", "--format", "json"}, `[{"name":"db-ready","commit":"`+commitA, "")

	e.expect(0, []string{"tag", "create", "base", "7c41"}, "Tagged 7c41d09e2b3a base\n", "")
	e.expect(ExitConflict, []string{"tag", "create", "base", "db-ready"}, "", `tag "base" exists`)
	e.expect(ExitNotFound, []string{"tag", "create", "x", "no-such"}, "", `no commit or tag "no-such"`)
	e.expect(ExitUsage, []string{"tag", "create", "x"}, "", "accepts 2 arg")

	e.expect(0, []string{"tag", "mv", "base", "db-ready"}, "Moved tag base from 7c41d09e2b3a to 3f9a2c1b7e4d\n", "")
	e.expect(ExitNotFound, []string{"tag", "mv", "nope", "db-ready"}, "", `no tag "nope"`)

	// Every tag is checked before any is removed.
	e.expect(ExitNotFound, []string{"tag", "rm", "base", "nope"}, "", `no tag "nope"`)
	if len(e.d.tags) != 2 {
		t.Fatalf("tags %v", e.d.tags)
	}
	e.expect(0, []string{"tag", "rm", "base", "db-ready"}, "Removed tag base (was 3f9a2c1b7e4d)\nRemoved tag db-ready (was 3f9a2c1b7e4d)\n", "")
	if len(e.d.tags) != 0 || len(e.d.commits) != 2 {
		t.Fatalf("tags %v, commits %d", e.d.tags, len(e.d.commits))
	}
}

func TestHelpListsCommits(t *testing.T) {
	e := newEnv(t)
	e.expect(0, []string{"--help"}, "", "")
	for _, cmd := range []string{"commit", "run-commit", "tag", "sleep", "wake", "restore"} {
		if !strings.Contains(e.out.String(), "\n  "+cmd+" ") {
			t.Errorf("--help lists no %s:\n%s", cmd, e.out)
		}
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1d12h", 36 * time.Hour, true},
		{"0d", 0, true},
		{"1d-1h", 0, false},
		{"d", 0, false},
		{"7 d", 0, false},
		{"", 0, false},
		{"1w", 0, false},
	}
	for _, tt := range tests {
		got, err := parseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseAge(%q) = %v, %v", tt.in, got, err)
		}
		if err != nil && ExitCode(err) != ExitUsage {
			t.Errorf("parseAge(%q): exit %d", tt.in, ExitCode(err))
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 84 << 20: "84 MiB",
		1288490189: "1.2 GiB", 1<<30 - 1: "1.0 GiB", 10 << 30: "10 GiB", 3 << 40: "3.0 TiB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFormatAge(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for d, want := range map[time.Duration]string{
		0: "just now", 5 * time.Second: "5s ago", 3 * time.Minute: "3m ago", 47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago",
	} {
		if got := formatAge(now, now.Add(-d)); got != want {
			t.Errorf("formatAge(%s) = %q, want %q", d, got, want)
		}
	}
}
