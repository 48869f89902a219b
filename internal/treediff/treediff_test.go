package treediff

import (
	"strings"
	"testing"

	"vers/internal/agent"
)

func file(path string, size int64, ino uint64, mt, ct int64) agent.Entry {
	return agent.Entry{Path: path, Type: agent.TypeFile, Mode: 0o644, Size: size, Ino: ino, MTime: mt, CTime: ct}
}

func TestCompare(t *testing.T) {
	a := Manifest{}
	b := Manifest{}
	add := func(m Manifest, e agent.Entry) { m[e.Path] = e }
	// the same on both sides: not listed, not hashed
	add(a, file("/same", 10, 1, 100, 100))
	add(b, file("/same", 10, 1, 100, 100))
	add(a, agent.Entry{Path: "/dir", Type: agent.TypeDir, Mode: 0o755, MTime: 1})
	add(b, agent.Entry{Path: "/dir", Type: agent.TypeDir, Mode: 0o755, MTime: 2}) // an entry added in it
	// added, removed
	add(b, file("/dir/new", 1, 9, 5, 5))
	add(a, file("/gone", 1, 8, 5, 5))
	// size differs: changed without a hash
	add(a, file("/grew", 10, 2, 100, 100))
	add(b, file("/grew", 11, 2, 200, 200))
	// same size, other times: unsure
	add(a, file("/touched", 10, 3, 100, 100))
	add(b, file("/touched", 10, 3, 100, 300))
	add(a, file("/rewritten", 10, 4, 100, 100))
	add(b, file("/rewritten", 10, 4, 200, 200))
	// chmod, chown, type, symlink target
	ch := file("/chmod", 1, 5, 1, 1)
	add(a, ch)
	ch.Mode, ch.CTime = 0o755, 2
	add(b, ch)
	co := file("/chown", 1, 6, 1, 1)
	add(a, co)
	co.UID = 1000
	add(b, co)
	add(a, file("/kind", 1, 7, 1, 1))
	add(b, agent.Entry{Path: "/kind", Type: agent.TypeSymlink, Link: "x"})
	add(a, agent.Entry{Path: "/link", Type: agent.TypeSymlink, Link: "/etc/passwd"})
	add(b, agent.Entry{Path: "/link", Type: agent.TypeSymlink, Link: "/etc/shadow"})
	add(a, agent.Entry{Path: "/unreadable", Type: agent.TypeDir, Err: "permission denied"})
	add(b, agent.Entry{Path: "/unreadable", Type: agent.TypeDir})

	r := Compare(a, b)
	// chmod sets ctime too, so /chmod's content is checked.
	if strings.Join(r.Unsure, " ") != "/chmod /rewritten /touched" {
		t.Errorf("unsure %q", r.Unsure)
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "/unreadable in A: permission denied") {
		t.Errorf("errors %q", r.Errors)
	}
	changes, errs := Settle(r, map[string]agent.HashResult{
		"/touched": {Path: "/touched", Sum: "s1"}, "/rewritten": {Path: "/rewritten", Sum: "s2"}, "/chmod": {Path: "/chmod", Sum: "c"},
	}, map[string]agent.HashResult{
		"/touched": {Path: "/touched", Sum: "s1"}, "/rewritten": {Path: "/rewritten", Sum: "s3"}, "/chmod": {Path: "/chmod", Sum: "c"},
	})
	var got []string
	for _, c := range changes {
		got = append(got, c.Path+":"+c.Kind+":"+strings.Join(c.What, ","))
	}
	want := "/chmod:changed:mode /chown:changed:owner /dir/new:added: /gone:removed: /grew:changed:content " +
		"/kind:changed:type /link:changed:target /rewritten:changed:content"
	if strings.Join(got, " ") != want {
		t.Errorf("changes\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if len(errs) != 1 {
		t.Errorf("errs %q", errs)
	}
	if s := Count(changes); s.Added != 1 || s.Removed != 1 || s.Changed != 6 {
		t.Errorf("stat %+v", s)
	}
}

// TestChecksums: with hashes from the guest, only they decide content.
func TestChecksums(t *testing.T) {
	fa, fb := file("/f", 10, 1, 1, 1), file("/f", 10, 1, 1, 1)
	fa.Sum, fb.Sum = "aaa", "bbb"
	r := Compare(Manifest{"/f": fa}, Manifest{"/f": fb})
	if len(r.Unsure) != 0 || len(r.Changes) != 1 || r.Changes[0].What[0] != "content" {
		t.Errorf("%+v", r)
	}
	fb.Sum, fb.MTime = "aaa", 9
	if r := Compare(Manifest{"/f": fa}, Manifest{"/f": fb}); len(r.Changes) != 0 {
		t.Errorf("same hashes differ: %+v", r)
	}
}

// TestSettleMissingHash: a file that could not be hashed is an error, not
// a silent "same".
func TestSettleMissingHash(t *testing.T) {
	r := Compare(Manifest{"/f": file("/f", 1, 1, 1, 1)}, Manifest{"/f": file("/f", 1, 1, 2, 2)})
	changes, errs := Settle(r, map[string]agent.HashResult{"/f": {Path: "/f", Err: "gone"}}, map[string]agent.HashResult{"/f": {Path: "/f", Sum: "x"}})
	if len(changes) != 0 || len(errs) != 1 || !strings.Contains(errs[0], "content not compared: gone") {
		t.Errorf("%+v %q", changes, errs)
	}
}

func TestSharedAndCandidates(t *testing.T) {
	seg := func(id string, n uint64, lost bool) agent.Segment { return agent.Segment{ID: id, Count: n, Lost: lost} }
	parent := []agent.Segment{seg("boot", 5, false), seg("s1", 900, false)}
	child := []agent.Segment{seg("boot", 5, false), seg("s1", 400, false), seg("c1", 3, false)}
	sibling := []agent.Segment{seg("boot", 5, false), seg("s1", 600, false), seg("c2", 9, false)}
	other := []agent.Segment{seg("boot2", 5, false)}
	for _, tt := range []struct {
		a, b []agent.Segment
		want int
	}{
		{parent, child, 1}, {child, sibling, 1}, {parent, parent, 1}, {parent, other, -1},
		{child, []agent.Segment{seg("boot", 5, false), seg("s1", 400, true)}, -1},
		{[]agent.Segment{seg("boot", 5, true), seg("s1", 1, false)}, []agent.Segment{seg("boot", 5, true), seg("s1", 1, false)}, 1},
	} {
		if got := Shared(tt.a, tt.b); got != tt.want {
			t.Errorf("Shared(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	a := []agent.Changed{{Path: "/etc/old", Seg: 0}, {Path: "/app/db", Seg: 1, Pos: 10}, {Path: "/tmp/x", Seg: 2}, {Path: "/root/a", Seg: 2}}
	b := []agent.Changed{{Path: "/app/db", Seg: 2}, {Path: "/srv/b", Seg: 3}}
	got := Candidates(1, []string{"/app", "/root", "/tmp"}, []string{"/tmp"}, a, b)
	if strings.Join(got, " ") != "/app/db /root/a" {
		t.Errorf("candidates %q", got)
	}
	if got := Candidates(1, []string{"/"}, nil, a, b); strings.Join(got, " ") != "/app/db /root/a /srv/b /tmp/x" {
		t.Errorf("candidates %q", got)
	}
}
