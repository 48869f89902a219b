package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/internal/tutorial"
)

// tutorialRows is the number of extra seeded users, products and orders
// (VERS_TUTORIAL_ROWS; 0 = the tutorial's data only).
func tutorialRows(t *testing.T) int {
	t.Helper()
	s := os.Getenv("VERS_TUTORIAL_ROWS")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("VERS_TUTORIAL_ROWS=%q: want a count of rows", s)
	}
	return n
}

// tutorialProject is a database-testing directory with its own daemon, so
// the tutorial's aliases can be used exactly as written.
func tutorialProject(t *testing.T) (*project, string) {
	t.Helper()
	home := shortHome(t)
	p := newProject(t)
	p.dir = filepath.Join(p.dir, "database-testing")
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.env = []string{"VERS_HOME=" + home}
	return p, home
}

// setUpTutorial runs Steps 1 to 3 up to the branch point: init, the
// tutorial's vers.toml, db-root, and the setup through `vers connect`.
func setUpTutorial(t *testing.T, p *project, rows int) {
	t.Helper()
	p.must("init")
	if err := os.WriteFile(filepath.Join(p.dir, "vers.toml"), []byte(tutorial.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("run", "--vm-alias", tutorial.Root)
	r := p.versIn(tutorial.Setup(rows), "connect")
	if r.code != 0 {
		t.Fatalf("setup: exit %d\nstdout: %s\nstderr: %s", r.code, tail(r.out), r.err)
	}
	for _, want := range []string{"Reading package lists", "Database created with 3 users", "And 4 products", "And 3 orders",
		"=== Database State ===", "1|alice@example.com|Alice Smith|", "2|Mouse|29.99|200", "3|1|379.98|shipped|"} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("setup output lacks %q:\n%s", want, tail(r.out))
		}
	}
	if rows > 0 && !strings.Contains(r.out, "Seeded to "+strconv.Itoa(3+rows)+" users") {
		t.Fatalf("seeding %d rows did not report:\n%s", rows, tail(r.out))
	}
	if got := shownTables(r.out); got != "orders products users" {
		t.Fatalf("show-state tables = %q", got)
	}
	t.Logf("setup took %.1fs", r.dur.Seconds())
}

// shownTables is the table list show-state.sh prints last, one space apart.
func shownTables(out string) string {
	i := strings.LastIndex(out, "Tables in database:")
	if i < 0 {
		return ""
	}
	return sortedFields(out[i+len("Tables in database:"):])
}

// sortedFields is the words of s in order, one space apart: .tables lays
// names out in columns.
func sortedFields(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}

// tail keeps failure messages readable when the seed makes outputs huge.
func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// verifyDB checks the VM's database against what the tutorial's steps must
// have left in it.
func verifyDB(t *testing.T, p *project, alias string, rows int) {
	t.Helper()
	checks, err := tutorial.Expect(alias, rows)
	if err != nil {
		t.Fatal(err)
	}
	r := p.versIn(tutorial.ProbeScript(checks), "execute", "-i", alias, "bash")
	if r.code != 0 {
		t.Fatalf("probe %s: exit %d: %s", alias, r.code, r.err)
	}
	out := r.out
	for _, err := range tutorial.Compare(checks, out) {
		t.Errorf("%s: %v", alias, err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func (p *project) head() string {
	p.t.Helper()
	for _, v := range p.status() {
		if v.Head {
			return v.Alias
		}
	}
	return ""
}

// TestTutorial performs TUTORIAL.md step by step through the CLI, with the
// tutorial's aliases, config and scripts, and checks every VM's database.
func TestTutorial(t *testing.T) {
	requireVMs(t)
	rows := tutorialRows(t)
	p, home := tutorialProject(t)

	// Steps 1 to 3: set up once.
	setUpTutorial(t, p, rows)
	for _, m := range tutorial.Migrations {
		p.must("branch", "--alias", m.Alias)
	}
	if h := p.head(); h != tutorial.Root {
		t.Fatalf("HEAD is %q after branching, want %s", h, tutorial.Root)
	}

	// Step 4: each migration in its branch, one after the other.
	for _, m := range tutorial.Migrations {
		p.must("checkout", m.Alias)
		r := p.versIn(m.Script(), "connect")
		if r.code != 0 || !strings.Contains(r.out, m.Done) || !strings.Contains(r.out, "=== Database State ===") {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", m.Title, r.code, tail(r.out), r.err)
		}
	}

	// Step 5: all four run at once, the branches under db-root.
	vms := p.status()
	byAlias := map[string]statusVM{}
	for _, v := range vms {
		byAlias[v.Alias] = v
	}
	root := byAlias[tutorial.Root]
	if len(vms) != 4 || root.State != "running" {
		t.Fatalf("status: %+v", vms)
	}
	for _, m := range tutorial.Migrations {
		v := byAlias[m.Alias]
		if v.State != "running" || v.ParentID != root.ID {
			t.Fatalf("%s: %+v (db-root is %s)", m.Alias, v, root.ID)
		}
	}
	text := p.must("status")
	for _, a := range []string{tutorial.Root, tutorial.Premium, tutorial.Inventory, tutorial.Analytics} {
		if !strings.Contains(text, a) {
			t.Fatalf("status lacks %s:\n%s", a, text)
		}
	}
	wantTables := map[string]string{
		tutorial.Premium:   "orders premium_benefits products users",
		tutorial.Inventory: "inventory_movements orders products suppliers users",
		tutorial.Analytics: "daily_stats orders page_views products user_sessions users",
	}
	for _, m := range tutorial.Migrations {
		p.must("checkout", m.Alias)
		out := p.must("execute", tutorial.TablesCmd)
		if got := sortedFields(out); got != wantTables[m.Alias] {
			t.Fatalf("%s .tables = %q, want %q", m.Alias, got, wantTables[m.Alias])
		}
	}
	for _, a := range []string{tutorial.Root, tutorial.Premium, tutorial.Inventory, tutorial.Analytics} {
		verifyDB(t, p, a, rows)
	}

	// Step 7: a risky change in a branch of migration-premium leaves it alone.
	p.must("checkout", tutorial.Premium)
	p.must("branch", "--alias", tutorial.Risky)
	p.must("checkout", tutorial.Risky)
	if r := p.versIn(tutorial.RiskyChange, "connect"); r.code != 0 || !strings.Contains(r.out, "premium_benefits dropped") {
		t.Fatalf("risky change: exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	verifyDB(t, p, tutorial.Risky, rows)
	verifyDB(t, p, tutorial.Premium, rows)

	// A/B: two branches of HEAD (premium-risky-change), one change each.
	p.must("branch", "--alias", tutorial.ApproachA)
	p.must("branch", "--alias", tutorial.ApproachB)
	for _, ab := range []struct{ alias, script, done string }{
		{tutorial.ApproachA, tutorial.ApproachAChange, "Approach A"},
		{tutorial.ApproachB, tutorial.ApproachBChange, "Approach B: premium_users table with 1 rows"},
	} {
		if r := p.versIn(ab.script, "connect", ab.alias); r.code != 0 || !strings.Contains(r.out, ab.done) {
			t.Fatalf("%s: exit %d\n%s\n%s", ab.alias, r.code, r.out, r.err)
		}
	}
	verifyDB(t, p, tutorial.ApproachA, rows)
	verifyDB(t, p, tutorial.ApproachB, rows)
	verifyDB(t, p, tutorial.Risky, rows)

	ids := map[string]string{}
	for _, v := range p.status() {
		ids[v.Alias] = v.ID
	}
	if len(ids) != 7 {
		t.Fatalf("want 7 VMs before cleanup, have %v", ids)
	}

	// Cleanup. The tutorial's `vers kill migration-premium` comes before its
	// -r: with Step 7's branches under migration-premium it must refuse, so
	// those additions of this run (not the tutorial's three branches) are
	// killed first, leaves before their parent; then the tutorial's
	// commands run as written.
	if r := p.expect(4, "-r", "kill", tutorial.Premium); !strings.Contains(r.err, tutorial.Risky) {
		t.Fatalf("refusal does not name the child: %q", r.err)
	}
	p.must("kill", tutorial.ApproachA)
	p.must("kill", tutorial.ApproachB)
	p.must("kill", tutorial.Risky)
	p.must("kill", tutorial.Premium)
	p.must("kill", tutorial.Inventory)
	p.must("kill", tutorial.Analytics)
	verifyDB(t, p, tutorial.Root, rows) // the baseline outlives its branches
	p.must("kill", tutorial.Root, "-r")

	if vms := p.status(); len(vms) != 0 {
		t.Fatalf("left after cleanup: %+v", vms)
	}
	for a, id := range ids {
		waitFor(t, "QEMU of "+a+" to exit", 10*time.Second, func() bool { return !qemuRunning(id) })
	}
	if dirs, _ := filepath.Glob(filepath.Join(home, "vms", "*")); len(dirs) != 0 {
		t.Fatalf("VM directories left: %v", dirs)
	}
}

// TestTutorialParallel applies Step 4's three migrations at the same time,
// from three vers processes as from three terminals, each naming its VM,
// and checks that they really ran at the same time in the guests.
func TestTutorialParallel(t *testing.T) {
	requireVMs(t)
	rows := tutorialRows(t)
	p, _ := tutorialProject(t)
	setUpTutorial(t, p, rows)
	defer p.vers("kill", tutorial.Root, "-r")
	for _, m := range tutorial.Migrations {
		p.must("branch", "--alias", m.Alias)
	}

	type run struct {
		r          result
		start, end time.Time
	}
	runs := make([]run, len(tutorial.Migrations))
	var wg sync.WaitGroup
	// As three people would press enter together, each session waits for
	// the same instant (guest clocks are the host's) before it migrates:
	// had vers run the sessions one after another, they could not overlap.
	go1 := time.Now().Add(4 * time.Second).UnixNano()
	barrier := fmt.Sprintf("while [ $(date +%%s%%N) -lt %d ]; do sleep 0.02; done\n", go1)
	for i, m := range tutorial.Migrations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i].start = time.Now()
			runs[i].r = p.versIn(barrier+m.Script(), "connect", m.Alias)
			runs[i].end = time.Now()
		}()
	}
	wg.Wait()

	var guest []tutorial.Interval
	for i, m := range tutorial.Migrations {
		r := runs[i].r
		if r.code != 0 || !strings.Contains(r.out, m.Done) {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", m.Alias, r.code, tail(r.out), r.err)
		}
		iv, err := tutorial.ParseInterval(r.out)
		if err != nil {
			t.Fatalf("%s: %v", m.Alias, err)
		}
		// The guest clocks were set from the host's at branch time: each
		// migration's guest interval lies within its vers process' lifetime.
		slack := int64(time.Second)
		if iv.Start < runs[i].start.UnixNano()-slack || iv.End > runs[i].end.UnixNano()+slack {
			t.Fatalf("%s: guest interval %v outside the host's %v..%v", m.Alias, iv, runs[i].start, runs[i].end)
		}
		t.Logf("%s: host %s..%s, guest migration and check %.0f ms", m.Alias, runs[i].start.Format("15:04:05.000"),
			runs[i].end.Format("15:04:05.000"), float64(iv.End-iv.Start)/1e6)
		guest = append(guest, iv)
	}
	if ov := tutorial.Overlap(guest); ov <= 0 {
		t.Fatalf("the three migrations did not run at the same time: %+v", guest)
	} else {
		t.Logf("all three migrations ran together for %.0f ms", float64(ov)/1e6)
	}
	for _, a := range []string{tutorial.Root, tutorial.Premium, tutorial.Inventory, tutorial.Analytics} {
		verifyDB(t, p, a, rows)
	}
	p.must("kill", tutorial.Root, "-r")
	if vms := p.status(); len(vms) != 0 {
		t.Fatalf("left after kill -r: %+v", vms)
	}
}
