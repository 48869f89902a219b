package cli

import (
	"strings"
	"testing"

	"vers/api"
)

func fsDiffEnv(t *testing.T, changes []api.FSChange) *env {
	e := treeEnv(t, nil)
	e.d.diff = func(req api.FSDiffRequest) (api.FSDiff, error) {
		a, _ := e.d.find(req.A)
		b, _ := e.d.find(req.B)
		d := api.FSDiff{A: vmRef(a), B: vmRef(b), Paths: []string{"/"}, Changes: changes,
			Stat: api.FSDiffStat{EntriesA: 100, EntriesB: 101}, DurationMillis: 420,
			Expected: []api.FSChange{{Path: "/etc/hostname", Kind: api.ChangeChanged, Note: "vers writes it"}}}
		for _, c := range changes {
			switch c.Kind {
			case api.ChangeAdded:
				d.Stat.Added++
			case api.ChangeRemoved:
				d.Stat.Removed++
			default:
				d.Stat.Changed++
			}
		}
		return d, nil
	}
	return e
}

var sampleChanges = []api.FSChange{
	{Path: "/root/new", Kind: api.ChangeAdded, B: &api.FSEntry{Type: "file", Mode: "0644", Size: 12}},
	{Path: "/root/old", Kind: api.ChangeRemoved, A: &api.FSEntry{Type: "symlink", Target: "/etc/passwd"}},
	{Path: "/root/notes.txt", Kind: api.ChangeChanged, What: []string{"content"}, A: &api.FSEntry{Type: "file", Size: 4}, B: &api.FSEntry{Type: "file", Size: 8}},
	{Path: "/root/blob", Kind: api.ChangeChanged, What: []string{"content"}, A: &api.FSEntry{Type: "file", Size: 3}, B: &api.FSEntry{Type: "file", Size: 3}},
	{Path: "/root/run.sh", Kind: api.ChangeChanged, What: []string{"mode", "owner"}, A: &api.FSEntry{Type: "file", Mode: "0644"}, B: &api.FSEntry{Type: "file", Mode: "0755", UID: 1000, GID: 1000}},
}

func TestDiffFilesystems(t *testing.T) {
	e := fsDiffEnv(t, sampleChanges)
	if code := e.run("diff", "db-root", "grand", "/root", "/etc", "--exclude", "/root/cache", "--include", "/tmp", "--checksum"); code != ExitError {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if req := e.d.diffs[0]; req.A != "db-root" || req.B != "grand" || strings.Join(req.Paths, " ") != "/root /etc" ||
		req.Exclude[0] != "/root/cache" || req.Include[0] != "/tmp" || !req.Checksum {
		t.Errorf("asked %+v", req)
	}
	out := e.out.String()
	for _, want := range []string{
		"A  /root/new        file 0644, 12 bytes\n",
		"D  /root/old        symlink → /etc/passwd\n",
		"M  /root/notes.txt  content (4 → 8 bytes)\n",
		"M  /root/run.sh     mode 0644 → 0755, owner 0:0 → 1000:1000\n",
		"(not counted) /etc/hostname differs: vers writes it\n",
		"db-root and grand: 1 added, 1 removed, 3 changed (100 and 101 entries under /; 420ms)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code := e.run("diff", "db-root", "grand", "--stat"); code != ExitError || strings.Count(e.out.String(), "\n") != 1 {
		t.Errorf("--stat: exit %d\n%s", code, e.out)
	}
	e = fsDiffEnv(t, nil)
	if code := e.run("diff", "db-root", "grand"); code != 0 {
		t.Errorf("no changes: exit %d\n%s%s", code, e.out, e.errOut)
	}
}

// TestDiffContent: --content and its cap go to versd; its file diffs are
// printed after the list, binary files named, truncation said.
func TestDiffContent(t *testing.T) {
	e := fsDiffEnv(t, sampleChanges)
	inner := e.d.diff
	e.d.diff = func(req api.FSDiffRequest) (api.FSDiff, error) {
		d, err := inner(req)
		d.Content = []api.FileDiff{
			{Path: "/root/notes.txt", Diff: "--- db-root:/root/notes.txt\n+++ grand:/root/notes.txt\n@@ -1 +1,2 @@\n one\n+two\n", Truncated: true},
			{Path: "/root/blob", Binary: true},
		}
		return d, err
	}
	if code := e.run("diff", "db-root", "grand", "--content", "--content-max", "8"); code != ExitError {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if req := e.d.diffs[0]; !req.Content || req.ContentMax != 8 {
		t.Errorf("asked %+v", req)
	}
	out := e.out.String()
	for _, want := range []string{"+++ grand:/root/notes.txt\n@@ -1 +1,2 @@\n one\n+two\n", "(/root/notes.txt: only the first bytes were compared; --content-max raises the cap)\n", "Binary file /root/blob differs\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code := e.run("diff", "db-root", "grand", "--content-max", "0"); code != ExitUsage {
		t.Errorf("--content-max 0: exit %d", code)
	}
}
