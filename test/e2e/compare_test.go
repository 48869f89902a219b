package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
)

// TestCompareBranches: after a branch into three, one command across the
// tree (one child dead, one whose command fails) is one table and one
// JSON object with a row each; compare groups the VMs that agree; diff
// --exec shows how two outputs differ; pick keeps one child, refusing
// while a sibling is another directory's HEAD.
func TestCompareBranches(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root := uniqueAlias(t, "cmp")
	p.must("run", "--vm-alias", root)
	defer p.vers("kill", "-r", root)
	p.must("execute", "echo base > /root/state")
	p.must("branch", "--alias", root+"-try", "--count", "3")
	a, b, c := root+"-try-1", root+"-try-2", root+"-try-3"
	p.must("execute", b, "echo changed > /root/state; rm -f /root/ok")
	p.must("execute", a, "touch /root/ok")
	p.must("execute", root, "touch /root/ok")
	dead, _ := p.find(c)
	if err := syscall.Kill(dead.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c+" dead", 30*time.Second, func() bool { v, _ := p.find(c); return v.State == api.StateDead })

	// The table: four rows, the dead VM's with its error; the exit code is
	// the highest (255, for the VM that could not run it).
	cmd := "cat /root/state; test -e /root/ok"
	r := p.vers("execute", "--tree", root, cmd)
	t.Logf("table:\n%s", r.out)
	if r.code != 255 {
		t.Errorf("exit %d, want 255: %s", r.code, r.err)
	}
	rows := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(rows) != 5 || !strings.HasPrefix(rows[1], root+" ") || !strings.Contains(rows[2], "= "+root) ||
		!strings.Contains(rows[3], "changed") || !strings.Contains(rows[4], "vers: ") {
		t.Errorf("table rows:\n%s", r.out)
	}
	var res api.FanoutResult
	r = p.vers("execute", "--tree", root, "--format", "json", cmd)
	decodeJSON(t, "fan-out", r.out, &res)
	if len(res.Results) != 4 || res.ExitCode != 255 || len(res.Groups) != 3 {
		t.Fatalf("fan-out %+v", res)
	}
	byAlias := map[string]api.FanoutRow{}
	for _, row := range res.Results {
		byAlias[row.VM.Alias] = row
	}
	switch {
	case byAlias[root].ExitCode != 0 || byAlias[root].Stdout != "base\n" || byAlias[a].Group != byAlias[root].Group:
		t.Errorf("root %+v, %s %+v", byAlias[root], a, byAlias[a])
	case byAlias[b].ExitCode != 1 || byAlias[b].Stdout != "changed\n":
		t.Errorf("%s %+v", b, byAlias[b])
	case byAlias[c].Error == nil || byAlias[c].ExitCode != 255:
		t.Errorf("dead %s %+v", c, byAlias[c])
	}

	// compare: the two that agree are one group, listed first.
	r = p.vers("compare", "--exec", "cat /root/state", root, a, b)
	if r.code != 1 || !strings.HasPrefix(r.out, "3 VMs, 2 results\n[1] 2 VMs, exit 0: "+root+", "+a+"\n    base\n") {
		t.Errorf("compare: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// diff --exec: a unified diff, exit 1; the same output, exit 0.
	r = p.vers("diff", a, b, "--exec", "cat /root/state")
	if r.code != 1 || !strings.Contains(r.out, "-base\n+changed\n") {
		t.Errorf("diff: exit %d\n%s%s", r.code, r.out, r.err)
	}
	p.must("diff", root, a, "--exec", "cat /root/state")
	var ed api.ExecDiff
	r = p.vers("diff", a, b, "--exec", "cat /root/state", "--format", "json")
	decodeJSON(t, "diff --exec", r.out, &ed)
	if r.code != 1 || ed.Same || ed.A.Stdout != "base\n" || ed.B.Stdout != "changed\n" || !strings.Contains(ed.StdoutDiff, "+changed") {
		t.Errorf("diff --exec --format json: exit %d, %+v", r.code, ed)
	}
	var cmp api.FanoutResult
	r = p.vers("compare", "--exec", "cat /root/state", "--tree", root, "--format", "json")
	decodeJSON(t, "compare", r.out, &cmp)
	if r.code != 1 || len(cmp.Results) != 4 || len(cmp.Groups) != 3 {
		t.Errorf("compare --format json: exit %d, %+v", r.code, cmp)
	}

	// pick: b is another project's HEAD, so pick refuses until --force.
	q := newProject(t)
	q.must("init")
	q.must("checkout", b)
	r = p.expect(4, "is HEAD of "+q.dir, "pick", a)
	if _, ok := p.find(b); !ok {
		t.Fatal("pick killed a sibling after refusing")
	}
	var picked api.PickResult
	decodeJSON(t, "pick", p.must("pick", a, "--force", "--format", "json"), &picked)
	if len(picked.Killed) != 2 || len(picked.Heads) != 1 || picked.Heads[0].Dir != q.dir {
		t.Errorf("pick %+v", picked)
	}
	left := map[string]bool{}
	for _, v := range p.status() {
		left[v.Alias] = true
	}
	if !left[root] || !left[a] || left[b] || left[c] {
		t.Errorf("after pick: %v", left)
	}
	if _, err := os.Stat(filepath.Join(q.dir, ".vers", "HEAD")); err != nil {
		t.Errorf("pick touched another directory's HEAD file: %v", err)
	}
}

// TestDiffFilesystems: a child branched a moment ago differs from its
// parent in nothing; then an added, a removed, a changed and a chmod-ed
// file, a changed symlink and a changed SQLite schema are each found, with
// a content diff of the text file; a commit and a paused VM are compared
// through a VM started for the diff.
func TestDiffFilesystems(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root := uniqueAlias(t, "fsd")
	kid := root + "-kid"
	p.must("run", "--vm-alias", root)
	defer p.vers("kill", "-r", root)
	p.must("execute", "mkdir -p /app/tree/sub /app/dir1 && cd /app && printf 'one\\n' > change && echo x > remove && echo k > keep && "+
		"echo 'echo hi' > run.sh && ln -s /etc/passwd link && sqlite3 /app/db.sqlite 'CREATE TABLE users(id INTEGER);' && "+
		"echo t > tree/sub/t && echo m > dir1/m")
	p.must("branch", "--alias", kid)

	var d api.FSDiff
	r := p.vers("diff", root, kid, "--format", "json")
	decodeJSON(t, "diff", r.out, &d)
	t.Logf("parent and fresh child: %+v in %d ms (%d and %d entries)", d.Stat, d.DurationMillis, d.Stat.EntriesA, d.Stat.EntriesB)
	if r.code != 0 || len(d.Changes) != 0 || d.Method != api.DiffJournal {
		t.Errorf("a child branched a moment ago differs: exit %d, %s, %+v", r.code, d.Method, d.Changes)
	}
	var walked api.FSDiff
	decodeJSON(t, "diff --checksum", p.vers("diff", root, kid, "--checksum", "--format", "json").out, &walked)
	if len(walked.Changes) != 0 || walked.Method != api.DiffWalk || walked.Stat.EntriesA < 1000 {
		t.Errorf("walking both trees: %s, %d entries, %+v", walked.Method, walked.Stat.EntriesA, walked.Changes)
	}

	p.must("execute", kid, "cd /app && echo new > new && rm remove && printf 'two\\n' >> change && chmod 755 run.sh && "+
		"ln -sfn /etc/shadow link && sqlite3 /app/db.sqlite 'ALTER TABLE users ADD COLUMN premium INTEGER;' && "+
		"rm -r tree && mv dir1 dir2")
	want := map[string]string{
		"/app/new": "added ", "/app/remove": "removed ", "/app/change": "changed content",
		"/app/run.sh": "changed mode", "/app/link": "changed target", "/app/db.sqlite": "changed content",
		"/app/tree": "removed ", "/app/tree/sub": "removed ", "/app/tree/sub/t": "removed ",
		"/app/dir1": "removed ", "/app/dir1/m": "removed ", "/app/dir2": "added ", "/app/dir2/m": "added ",
	}
	// The journal's answer and the walk's are the same.
	for _, args := range [][]string{{"diff", root, kid, "--format", "json"}, {"diff", root, kid, "--checksum", "--format", "json"}} {
		r = p.vers(args...)
		if r.code != 1 {
			t.Fatalf("exit %d: %s", r.code, r.err)
		}
		decodeJSON(t, "diff", r.out, &d)
		t.Logf("%s: %+v in %d ms", d.Method, d.Stat, d.DurationMillis)
		got := map[string]string{}
		for _, c := range d.Changes {
			got[c.Path] = c.Kind + " " + strings.Join(c.What, ",")
		}
		for path, w := range want {
			if got[path] != w {
				t.Errorf("%s: %s: %q, want %q", d.Method, path, got[path], w)
			}
		}
		for path := range got {
			if _, ok := want[path]; !ok && path != "/root/.bash_history" {
				t.Errorf("%s: unexpected change %s: %s", d.Method, path, got[path])
			}
		}
	}
	out := p.vers("diff", root, kid, "/app", "--content").out
	if !strings.Contains(out, " one\n+two\n") || !strings.Contains(out, "Binary file /app/db.sqlite differs") {
		t.Errorf("--content:\n%s", out)
	}
	if out := p.vers("diff", root, kid, "/app", "--stat", "--checksum").out; !strings.Contains(out, "3 added, 6 removed, 4 changed") {
		t.Errorf("--stat --checksum: %s", out)
	}
	// A commit is compared as the VM it starts, which goes after.
	tag := root + "-base"
	p.must("commit", root, "--tag", tag)
	defer p.vers("commit", "rm", tag)
	before := len(p.status())
	var fromCommit api.FSDiff
	r = p.vers("diff", tag, kid, "/app", "--format", "json")
	decodeJSON(t, "diff of a commit", r.out, &fromCommit)
	if st := fromCommit.Stat; r.code != 1 || fromCommit.A.Commit == "" || st.Added != 3 || st.Removed != 6 || st.Changed != 4 {
		t.Errorf("diff of commit %s and %s: exit %d, %+v", tag, kid, r.code, fromCommit)
	}
	if after := len(p.status()); after != before {
		t.Errorf("%d VMs after the diff of a commit, %d before", after, before)
	}
	// A paused VM is compared through a child branched from it for the
	// diff; it stays paused.
	p.must("pause", kid)
	var paused api.FSDiff
	r = p.vers("diff", root, kid, "/app", "--format", "json")
	decodeJSON(t, "diff of a paused VM", r.out, &paused)
	if st := paused.Stat; r.code != 1 || paused.B.Alias != kid || st.Added != 3 || st.Removed != 6 || st.Changed != 4 {
		t.Errorf("diff with paused %s: exit %d, %+v", kid, r.code, paused)
	}
	if v, _ := p.find(kid); v.State != api.StatePaused || len(p.status()) != before {
		t.Errorf("after the diff: %s is %s, %d VMs (%d before)", kid, v.State, len(p.status()), before)
	}
}
