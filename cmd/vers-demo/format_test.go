package main

import (
	"strings"
	"testing"
	"time"
)

func TestComparison(t *testing.T) {
	s := time.Second
	trad := phases{boot: 12 * s, setup: 90 * s, migrate: 3 * s, compare: s, teardown: 2 * s}
	vers := phases{boot: 4 * s, setup: 30 * s, branch: 5 * s, migrate: 2 * s, compare: s, teardown: 2 * s}
	out := comparison(trad, vers, 0)
	for _, want := range []string{"108.0 s", "44.0 s", "2.45× faster", "64.0 s saved", "59% less time", "the tutorial's data)"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	if out := comparison(trad, vers, 200000); !strings.Contains(out, "200000 seeded rows") {
		t.Errorf("rows not shown:\n%s", out)
	}
}

func TestAbbreviate(t *testing.T) {
	lines := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(strings.Repeat("x", i%3) + "\n")
		}
		return b.String()
	}
	for _, tc := range []struct {
		n, max, want int
		cut          bool
	}{{5, 10, 5, false}, {10, 10, 10, false}, {100, 9, 10, true}} {
		got := abbreviate(lines(tc.n), tc.max)
		if n := strings.Count(got, "\n"); n != tc.want || strings.Contains(got, "more lines") != tc.cut {
			t.Errorf("abbreviate(%d lines, %d): %d lines\n%s", tc.n, tc.max, n, got)
		}
	}
	if got := indent("a\nb\n"); got != "  a\n  b\n" {
		t.Errorf("indent = %q", got)
	}
}

func TestWithoutStamps(t *testing.T) {
	in := "MIGRATION-START 1\nPremium migration complete.\nMIGRATION-END 2\n=== Database State ===\n"
	if got := withoutStamps(in); got != "Premium migration complete.\n=== Database State ===\n" {
		t.Errorf("withoutStamps = %q", got)
	}
}
