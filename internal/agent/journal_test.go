package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestJournal: changes of every kind are recorded under their path, in the
// segment current when they happened; a removed directory is recorded
// under its parent; the host reads it all through the journal operation.
func TestJournal(t *testing.T) {
	f, c := newFixture(t)
	dir := t.TempDir()
	j, err := StartJournal(dir, t.Logf)
	if err != nil {
		t.Skipf("no fanotify here: %v", err)
	}
	t.Cleanup(j.Close)
	f.srv.cfg.Journal = j
	p := func(rel string) string { return filepath.Join(dir, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("a"), []byte("1"), 0o644))
	must(os.MkdirAll(p("d/e"), 0o755))
	must(os.WriteFile(p("d/e/f"), []byte("x"), 0o644))
	must(os.WriteFile(p("same"), []byte("s"), 0o644))
	must(os.MkdirAll(p("gone/inside"), 0o755))
	must(os.Mkdir(p("dir"), 0o755))
	must(os.WriteFile(p("dir/old"), nil, 0o644))
	ctx := context.Background()
	if err := c.Sync(ctx, SyncRequest{Epoch: "branch-1"}); err != nil {
		t.Fatal(err)
	}
	must(os.WriteFile(p("a"), []byte("2"), 0o644))
	must(os.Chmod(p("d/e/f"), 0o600))
	must(os.Rename(p("d/e"), p("d/moved")))
	must(os.Symlink("/etc", p("link")))
	must(os.RemoveAll(p("gone")))
	must(os.Chmod(p("dir"), 0o700))

	segs, changed, err := c.Journal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[1].ID != "branch-1" || segs[1].Count == 0 || segs[0].Count == 0 {
		t.Fatalf("segments %+v", segs)
	}
	last := map[string]int{}
	for _, ch := range changed { // a directory may be named twice: as an entry, and as itself
		last[ch.Path] = max(last[ch.Path], ch.Seg)
	}
	for path, seg := range map[string]int{"a": 1, "d": 0, "d/moved/f": 1, "d/moved": 1, "d/e": 1, "link": 1, "gone": 1, "same": 0, "dir": 1, "dir/old": 0} {
		got, ok := last[p(path)]
		if !ok || got != seg {
			t.Errorf("%s: segment %d (listed %v), want %d", path, got, ok, seg)
		}
	}
	var mine []string
	for path := range last {
		if rel, err := filepath.Rel(dir, path); err == nil && rel != ".." && !filepath.IsAbs(rel) && rel[0] != '.' {
			mine = append(mine, rel)
		}
	}
	slices.Sort(mine)
	t.Logf("journal of %s: %v", dir, mine)
	if slices.Contains(mine, "gone/inside") {
		t.Error("a path under a removed directory is listed")
	}
}

func TestJournalMissing(t *testing.T) {
	_, c := newFixture(t)
	if _, _, err := c.Journal(context.Background()); err == nil {
		t.Fatal("a server without a journal answered")
	}
}

// TestJournalClose: the journal waits for events without a timeout, so
// Close must wake it; a Close that hangs fails here.
func TestJournalClose(t *testing.T) {
	j, err := StartJournal(t.TempDir(), t.Logf)
	if err != nil {
		t.Skipf("no fanotify here: %v", err)
	}
	closed := make(chan struct{})
	go func() { j.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close of an idle journal did not return")
	}
}
