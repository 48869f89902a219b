package tutorial

import (
	"errors"
	"strings"
	"testing"
)

func TestSetup(t *testing.T) {
	for _, tc := range []struct {
		rows int
		seed bool
	}{{0, false}, {200000, true}} {
		s := Setup(tc.rows)
		for _, want := range []string{
			"apt-get update && apt-get install -y sqlite3", "mkdir -p /app/db", "cd /app",
			"'alice@example.com'", "'bob@example.com'", "'carol@example.com'",
			"cat > /app/show-state.sh << 'EOF'", "chmod +x /app/show-state.sh", "\n/app/show-state.sh\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("rows %d: setup lacks %q", tc.rows, want)
			}
		}
		if strings.Contains(s, "nameserver") || strings.Contains(s, "resolv.conf") {
			t.Errorf("rows %d: setup points DNS at an outside resolver", tc.rows)
		}
		if !strings.HasSuffix(s, "\nexit\n") {
			t.Errorf("rows %d: setup does not end with exit", tc.rows)
		}
		if got := strings.Contains(s, "n < 200000"); got != tc.seed {
			t.Errorf("rows %d: seeded = %v", tc.rows, got)
		}
		// The seed runs after the base schema and before the state is shown.
		if tc.seed && !(strings.Index(s, "CREATE TABLE orders") < strings.Index(s, "Seed test data") &&
			strings.Index(s, "Seed test data") < strings.Index(s, "cat > /app/show-state.sh")) {
			t.Errorf("seed block out of order")
		}
	}
}

func TestMigrationScript(t *testing.T) {
	want := []string{Premium, Inventory, Analytics}
	for i, m := range Migrations {
		if m.Alias != want[i] {
			t.Fatalf("migration %d is %s, want %s", i, m.Alias, want[i])
		}
		s := m.Script()
		if !strings.Contains(s, "sqlite3 /app/db/ecommerce.db << 'EOF'\n"+m.SQL+"EOF\n") ||
			!strings.Contains(s, "\n/app/show-state.sh\necho \"MIGRATION-END $(date +%s%N)\"\nexit\n") {
			t.Errorf("%s script:\n%s", m.Alias, s)
		}
	}
}

func TestCompare(t *testing.T) {
	checks := []Check{{"a", "SELECT 1;", "1"}, {"b", "SELECT 2;", "x\ny"}, {"c", "SELECT 3;", ""}}
	probe := ProbeScript(checks)
	if strings.Count(probe, sep) != 3 || !strings.HasPrefix(probe, "sqlite3 /app/db/ecommerce.db << 'SQL'\n") {
		t.Fatalf("probe:\n%s", probe)
	}
	tests := []struct {
		name string
		out  string
		bad  int
	}{
		{"all match", "1\n" + sep + "\nx\ny\n" + sep + "\n" + sep + "\n", 0},
		{"crlf", "1\r\n" + sep + "\r\nx\r\ny\r\n" + sep + "\r\n" + sep + "\r\n", 0},
		{"one differs", "2\n" + sep + "\nx\ny\n" + sep + "\n" + sep + "\n", 1},
		{"extra row", "1\n" + sep + "\nx\ny\n" + sep + "\nz\n" + sep + "\n", 1},
		{"truncated", "1\n" + sep + "\n", 2},
	}
	for _, tc := range tests {
		errs := Compare(checks, tc.out)
		if len(errs) != tc.bad {
			t.Errorf("%s: %d errors %v, want %d", tc.name, len(errs), errs, tc.bad)
		}
		for _, err := range errs {
			if !errors.Is(err, ErrMismatch) {
				t.Errorf("%s: %v is not ErrMismatch", tc.name, err)
			}
		}
	}
}

func TestExpect(t *testing.T) {
	for _, a := range []string{Root, Premium, Inventory, Analytics, Risky, ApproachA, ApproachB} {
		c, err := Expect(a, 5)
		if err != nil || len(c) < 5 {
			t.Fatalf("%s: %d checks, %v", a, len(c), err)
		}
		if c[0].Want != "8" { // 3 tutorial users + 5 seeded
			t.Errorf("%s: users want %q", a, c[0].Want)
		}
	}
	if _, err := Expect("nope", 0); !errors.Is(err, ErrMismatch) {
		t.Fatalf("unknown alias: %v", err)
	}
}

func TestOverlap(t *testing.T) {
	out := "x\nMIGRATION-START 100\nfoo 1 2\nMIGRATION-END 250\n"
	iv, err := ParseInterval(out)
	if err != nil || iv != (Interval{100, 250}) {
		t.Fatalf("ParseInterval = %v, %v", iv, err)
	}
	if _, err := ParseInterval("MIGRATION-START 5\n"); err == nil {
		t.Fatal("no end accepted")
	}
	for _, tc := range []struct {
		ivs  []Interval
		want int64
	}{
		{[]Interval{{0, 10}, {5, 20}, {8, 30}}, 2},
		{[]Interval{{0, 10}, {10, 20}}, 0},
		{[]Interval{{0, 10}, {20, 30}}, 0},
		{nil, 0},
	} {
		if got := Overlap(tc.ivs); got != tc.want {
			t.Errorf("Overlap(%v) = %d, want %d", tc.ivs, got, tc.want)
		}
	}
}
