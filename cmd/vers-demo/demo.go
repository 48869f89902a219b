package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"vers/internal/tutorial"
)

type options struct {
	vers            string
	rows            int
	prefix          string
	skipTraditional bool
}

// demo is one run of the tutorial.
type demo struct {
	*runner
	o   options
	out io.Writer
}

func (d *demo) name(alias string) string { return d.o.prefix + alias }

func run(ctx context.Context, o options, out io.Writer) error {
	work, err := os.MkdirTemp("", "vers-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "database-testing")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	d := &demo{runner: &runner{bin: o.vers, dir: dir, out: out}, o: o, out: out}
	defer d.cleanup()
	if err := d.checkFree(ctx); err != nil {
		return err
	}
	start := time.Now()
	vw, err := d.tutorial(ctx)
	if err != nil {
		return err
	}
	if !o.skipTraditional {
		tw, err := d.traditional(ctx)
		if err != nil {
			return err
		}
		d.heading("Step 6: the time savings, measured")
		fmt.Fprint(out, comparison(tw, vw, o.rows))
	}
	if err := d.restore(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nDemo finished in %s.\n", secs(time.Since(start)))
	return nil
}

// tag is the commit the demo keeps db-root in.
func (d *demo) tag() string { return d.name("db-ready") }

// keep commits db-root as the tutorial leaves it, before the cleanup
// kills it: the database on disk, with everything that ran.
func (d *demo) keep(ctx context.Context) error {
	d.heading("Keep db-root: a commit of its whole state, on disk")
	d.trackCommit(d.tag())
	_, _, err := d.step(ctx, "vers commit "+d.name(tutorial.Root)+" --tag "+d.tag()+` -m "the e-commerce database with its base schema"`,
		"", "commit", d.name(tutorial.Root), "--tag", d.tag(), "-m", "the e-commerce database with its base schema")
	if err != nil {
		return err
	}
	_, _, err = d.step(ctx, "vers commit ls", "", "commit", "ls")
	return err
}

// restore ends the demo: db-root is gone, and its commit brings the
// database back in a new VM.
func (d *demo) restore(ctx context.Context) error {
	d.heading("db-root is gone; its commit brings the database back")
	back := d.name("db-restored")
	d.track(back)
	steps := [][]string{
		{"run-commit", d.tag(), "--vm-alias", back},
		{"execute", back, tutorial.TablesCmd + " && sqlite3 " + tutorial.DB + " 'SELECT count(*) AS users FROM users'"},
		{"kill", back},
		{"commit", "rm", d.tag()},
	}
	shows := []string{"", "", "", "   # the demo leaves nothing behind; a commit of yours stays until you remove it"}
	for i, args := range steps {
		show := "vers " + strings.Join(args, " ") + shows[i]
		if args[0] == "execute" {
			show = fmt.Sprintf("vers execute %s \"%s && sqlite3 %s 'SELECT count(*) AS users FROM users'\"", back, tutorial.TablesCmd, tutorial.DB)
		}
		if _, _, err := d.step(ctx, show, "", args...); err != nil {
			return err
		}
	}
	d.forgetCommit(d.tag())
	return nil
}

// checkFree refuses to start when a VM already uses one of the demo's aliases.
func (d *demo) checkFree(ctx context.Context) error {
	vms, err := d.status(ctx)
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, a := range append(tutorialAliases(), traditionalAliases()...) {
		ours[d.name(a)] = true
	}
	for _, v := range vms {
		if ours[v.Alias] {
			return fmt.Errorf("a VM named %q already exists; kill it (vers kill %s -r) or run with --prefix", v.Alias, v.Alias)
		}
	}
	out, _, err := d.vers(ctx, "", "tag", "ls", "-q")
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(out), d.tag()) {
		return fmt.Errorf("a commit tagged %q already exists; remove it (vers commit rm %s) or run with --prefix", d.tag(), d.tag())
	}
	return nil
}

func tutorialAliases() []string {
	return []string{tutorial.Root, tutorial.Premium, tutorial.Inventory, tutorial.Analytics, tutorial.Risky, tutorial.ApproachA, tutorial.ApproachB, "db-restored"}
}

func traditionalAliases() []string {
	var a []string
	for _, m := range tutorial.Migrations {
		a = append(a, "trad-"+m.Alias)
	}
	return a
}

func (d *demo) heading(title string) {
	fmt.Fprintf(d.out, "\n\033[1m━━ %s ━━\033[0m\n", title)
}

// step runs one vers command, shows it, its (abbreviated) output and its
// duration.
func (d *demo) step(ctx context.Context, show string, stdin string, args ...string) (string, time.Duration, error) {
	fmt.Fprintf(d.out, "\033[36m$ %s\033[0m\n", show)
	out, dur, err := d.vers(ctx, stdin, args...)
	if s := strings.TrimRight(abbreviate(out, 40), "\n"); s != "" {
		fmt.Fprint(d.out, indent(s))
	}
	fmt.Fprintf(d.out, "  \033[2m(%s)\033[0m\n", secs(dur))
	return out, dur, err
}

// tutorial runs Steps 1 to 5 and 7 and the cleanup, and returns the phases
// of the vers way.
func (d *demo) tutorial(ctx context.Context) (phases, error) {
	var ph phases
	root := d.name(tutorial.Root)

	d.heading("Step 1: project setup")
	if _, _, err := d.step(ctx, "vers init", "", "init"); err != nil {
		return ph, err
	}
	if err := os.WriteFile(filepath.Join(d.dir, "vers.toml"), []byte(tutorial.Config), 0o644); err != nil {
		return ph, err
	}
	fmt.Fprintf(d.out, "\033[36m$ cat vers.toml\033[0m\n%s", indent(tutorial.Config))

	d.heading("Step 2: launch db-root and set it up")
	d.track(root)
	_, dur, err := d.step(ctx, "vers run --vm-alias "+root, "", "run", "--vm-alias", root)
	if err != nil {
		return ph, err
	}
	ph.boot = dur
	seed := ""
	if d.o.rows > 0 {
		seed = fmt.Sprintf(", seed %d users, products and orders", d.o.rows)
	}
	_, dur, err = d.step(ctx, "vers connect   # apt-get install sqlite3, base schema"+seed+", show-state.sh, exit",
		tutorial.Setup(d.o.rows), "connect")
	if err != nil {
		return ph, err
	}
	ph.setup = dur

	d.heading("Step 3: branch before the migrations")
	for _, m := range tutorial.Migrations {
		d.track(d.name(m.Alias))
		_, dur, err := d.step(ctx, "vers branch --alias "+d.name(m.Alias), "", "branch", "--alias", d.name(m.Alias))
		if err != nil {
			return ph, err
		}
		ph.branch += dur
	}

	d.heading("Step 4: the three migrations in parallel (three terminals)")
	dur, err = d.parallelMigrations(ctx)
	if err != nil {
		return ph, err
	}
	ph.migrate = dur

	d.heading("Step 5: compare results")
	if _, _, err := d.step(ctx, "vers status", "", "status"); err != nil {
		return ph, err
	}
	for _, m := range tutorial.Migrations {
		_, d1, err := d.step(ctx, "vers checkout "+d.name(m.Alias), "", "checkout", d.name(m.Alias))
		if err != nil {
			return ph, err
		}
		_, d2, err := d.step(ctx, `vers execute "`+tutorial.TablesCmd+`"`, "", "execute", tutorial.TablesCmd)
		if err != nil {
			return ph, err
		}
		ph.compare += d1 + d2
	}
	if err := d.compareTools(ctx); err != nil {
		return ph, err
	}

	if err := d.advanced(ctx); err != nil {
		return ph, err
	}
	if err := d.keep(ctx); err != nil {
		return ph, err
	}

	d.heading("Cleanup")
	for _, a := range []string{tutorial.ApproachA, tutorial.ApproachB, tutorial.Risky} {
		if _, _, err := d.step(ctx, "vers kill "+d.name(a)+"   # Step 7's branches first: migration-premium has children", "", "kill", d.name(a)); err != nil {
			return ph, err
		}
	}
	for _, args := range [][]string{{"kill", d.name(tutorial.Premium)}, {"kill", d.name(tutorial.Inventory)},
		{"kill", d.name(tutorial.Analytics)}, {"kill", root, "-r"}} {
		_, dur, err := d.step(ctx, "vers "+strings.Join(args, " "), "", args...)
		if err != nil {
			return ph, err
		}
		ph.teardown += dur
	}
	return ph, nil
}

// compareTools is Step 5 the way vers offers beyond the tutorial: one
// table of the tables of the whole tree, and how two migrations' schemas
// differ.
func (d *demo) compareTools(ctx context.Context) error {
	root := d.name(tutorial.Root)
	fmt.Fprintln(d.out, "  \033[2mThe same comparison in one command, and what differs between two migrations:\033[0m")
	if _, _, err := d.step(ctx, `vers execute --tree `+root+` "`+tutorial.TablesCmd+`"`, "",
		"execute", "--tree", root, tutorial.TablesCmd); err != nil {
		return err
	}
	a, b := d.name(tutorial.Premium), d.name(tutorial.Inventory)
	schema := "sqlite3 " + tutorial.DB + " .schema"
	_, _, err := d.step(ctx, "vers diff "+a+" "+b+` --exec "`+schema+`"`, "", "diff", a, b, "--exec", schema)
	if err := differ(err, "schema", a, b); err != nil {
		return err
	}
	_, _, err = d.step(ctx, "vers diff "+a+" "+b+"   # their filesystems", "", "diff", a, b)
	return differ(err, "files", a, b)
}

// differ is the outcome of a vers diff that must find a difference: exit 1.
func differ(err error, what, a, b string) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return nil
	}
	if err == nil {
		return fmt.Errorf("vers diff says %s and %s have the same %s", a, b, what)
	}
	return err
}

// parallelMigrations runs Step 4 as from three terminals at once, each
// naming its VM, and shows each one's output and duration.
func (d *demo) parallelMigrations(ctx context.Context) (time.Duration, error) {
	type res struct {
		out string
		dur time.Duration
		err error
	}
	ms := tutorial.Migrations
	rs := make([]res, len(ms))
	for i, m := range ms {
		fmt.Fprintf(d.out, "\033[36m[terminal %d]$ vers connect %s << EOF   # %s\033[0m\n", i+1, d.name(m.Alias), m.Title)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i].out, rs[i].dur, rs[i].err = d.vers(ctx, m.Script(), "connect", d.name(m.Alias))
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	var ivs []tutorial.Interval
	for i, m := range ms {
		fmt.Fprintf(d.out, "\033[1m[terminal %d] %s\033[0m \033[2m(%s)\033[0m\n", i+1, d.name(m.Alias), secs(rs[i].dur))
		fmt.Fprint(d.out, indent(strings.TrimRight(abbreviate(withoutStamps(rs[i].out), 30), "\n")))
		if rs[i].err != nil {
			return wall, rs[i].err
		}
		if iv, err := tutorial.ParseInterval(rs[i].out); err == nil {
			ivs = append(ivs, iv)
		}
	}
	fmt.Fprintf(d.out, "  \033[2m(all three in %s; in the guests the three migrations ran together for %.0f ms)\033[0m\n",
		secs(wall), float64(tutorial.Overlap(ivs))/1e6)
	return wall, nil
}

// advanced is Step 7: a risky change in its own branch, and an A/B pair.
func (d *demo) advanced(ctx context.Context) error {
	d.heading("Step 7: advanced workflows")
	premium, risky := d.name(tutorial.Premium), d.name(tutorial.Risky)
	steps := []struct {
		show, stdin string
		args        []string
		track       string
	}{
		{show: "vers checkout " + premium, args: []string{"checkout", premium}},
		{show: "vers branch --alias " + risky, args: []string{"branch", "--alias", risky}, track: risky},
		{show: "vers checkout " + risky, args: []string{"checkout", risky}},
		{show: "vers connect   # risky: DROP TABLE premium_benefits", stdin: tutorial.RiskyChange, args: []string{"connect"}},
		{show: `vers execute "` + tutorial.TablesCmd + `"   # in ` + risky, args: []string{"execute", tutorial.TablesCmd}},
		{show: `vers execute ` + premium + ` "` + tutorial.TablesCmd + `"   # migration-premium is unchanged`, args: []string{"execute", premium, tutorial.TablesCmd}},
		{show: "vers branch --alias " + d.name(tutorial.ApproachA), args: []string{"branch", "--alias", d.name(tutorial.ApproachA)}, track: d.name(tutorial.ApproachA)},
		{show: "vers branch --alias " + d.name(tutorial.ApproachB), args: []string{"branch", "--alias", d.name(tutorial.ApproachB)}, track: d.name(tutorial.ApproachB)},
		{show: "vers connect " + d.name(tutorial.ApproachA) + "   # approach A: an index", stdin: tutorial.ApproachAChange, args: []string{"connect", d.name(tutorial.ApproachA)}},
		{show: "vers connect " + d.name(tutorial.ApproachB) + "   # approach B: a table", stdin: tutorial.ApproachBChange, args: []string{"connect", d.name(tutorial.ApproachB)}},
		{show: "vers status", args: []string{"status"}},
	}
	for _, s := range steps {
		if s.track != "" {
			d.track(s.track)
		}
		if _, _, err := d.step(ctx, s.show, s.stdin, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// traditional is Step 6's baseline: for each migration, a fresh VM, the
// whole setup, the migration, the schema check and the teardown, one after
// the other.
func (d *demo) traditional(ctx context.Context) (phases, error) {
	var ph phases
	d.heading("Step 6, the traditional way: a fresh VM and the whole setup for each migration, one after the other")
	for _, m := range tutorial.Migrations {
		alias := d.name("trad-" + m.Alias)
		d.track(alias)
		var cur phases
		var err error
		fmt.Fprintf(d.out, "\033[1m%s\033[0m\n", m.Title)
		if _, cur.boot, err = d.vers(ctx, "", "run", "--vm-alias", alias); err != nil {
			return ph, err
		}
		if _, cur.setup, err = d.vers(ctx, tutorial.Setup(d.o.rows), "connect", alias); err != nil {
			return ph, err
		}
		if _, cur.migrate, err = d.vers(ctx, m.Script(), "connect", alias); err != nil {
			return ph, err
		}
		var tables string
		if tables, cur.compare, err = d.vers(ctx, "", "execute", alias, tutorial.TablesCmd); err != nil {
			return ph, err
		}
		if _, cur.teardown, err = d.vers(ctx, "", "kill", alias); err != nil {
			return ph, err
		}
		fmt.Fprintf(d.out, "  vers run %s · setup %s · migrate %s · .tables %s · kill %s = %s\n  tables: %s\n",
			secs(cur.boot), secs(cur.setup), secs(cur.migrate), secs(cur.compare), secs(cur.teardown), secs(cur.total()),
			strings.Join(strings.Fields(tables), " "))
		ph.add(cur)
	}
	return ph, nil
}
