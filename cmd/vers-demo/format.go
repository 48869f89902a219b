package main

import (
	"fmt"
	"strings"
	"time"
)

// phases are the timed parts of one way of testing the three migrations.
type phases struct {
	boot, setup, branch, migrate, compare, teardown time.Duration
}

func (p phases) total() time.Duration {
	return p.boot + p.setup + p.branch + p.migrate + p.compare + p.teardown
}

func (p *phases) add(q phases) {
	p.boot += q.boot
	p.setup += q.setup
	p.branch += q.branch
	p.migrate += q.migrate
	p.compare += q.compare
	p.teardown += q.teardown
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// comparison is Step 6 side by side: the traditional way against the vers
// way, phase by phase, and the ratio of the totals.
func comparison(trad, vers phases, rows int) string {
	var b strings.Builder
	data := "the tutorial's data"
	if rows > 0 {
		data = fmt.Sprintf("the tutorial's data + %d seeded rows per table", rows)
	}
	fmt.Fprintf(&b, "Three migrations tested from one base database (%s):\n\n", data)
	row := func(name, t, v string) { fmt.Fprintf(&b, "  %-18s %-34s %s\n", name, t, v) }
	row("", "traditional (sequential)", "vers (set up once, branch)")
	row("boot VMs", secs(trad.boot)+" (3 × vers run)", secs(vers.boot)+" (1 × vers run)")
	row("setup", secs(trad.setup)+" (3 ×, repeated)", secs(vers.setup)+" (once)")
	row("branch", "—", secs(vers.branch)+" (3 × vers branch)")
	row("migrations", secs(trad.migrate)+" (one after another)", secs(vers.migrate)+" (in parallel)")
	row("compare schemas", secs(trad.compare), secs(vers.compare))
	row("teardown", secs(trad.teardown), secs(vers.teardown))
	row("total", secs(trad.total()), secs(vers.total()))
	if vers.total() > 0 {
		saved := trad.total() - vers.total()
		fmt.Fprintf(&b, "\n  vers is %.2f× faster: %s saved (%.0f%% less time)\n",
			trad.total().Seconds()/vers.total().Seconds(), secs(saved), 100*saved.Seconds()/trad.total().Seconds())
	}
	return b.String()
}

// abbreviate keeps long outputs readable: the first and last lines of
// anything longer than max lines.
func abbreviate(s string, max int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= max {
		return s
	}
	head, tail := max*2/3, max-max*2/3
	out := append([]string{}, lines[:head]...)
	out = append(out, fmt.Sprintf("… %d more lines …", len(lines)-head-tail))
	out = append(out, lines[len(lines)-tail:]...)
	return strings.Join(out, "\n") + "\n"
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// withoutStamps drops the guest timestamps tutorial.Migration.Script prints
// around a migration: they are for measuring, not for reading.
func withoutStamps(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "MIGRATION-START ") && !strings.HasPrefix(line, "MIGRATION-END ") {
			b.WriteString(line)
		}
	}
	return b.String()
}
