package tutorial

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMismatch is returned when a VM's database is not what its step should
// have left.
var ErrMismatch = errors.New("database differs from the tutorial")

// Check is one query and the exact output it must give.
type Check struct {
	Name string
	SQL  string
	Want string
}

const sep = "@@check@@"

// ProbeScript is a shell command that runs every check's query in one sqlite3
// process, separating the outputs so Compare can split them.
func ProbeScript(checks []Check) string {
	var b strings.Builder
	b.WriteString("sqlite3 " + DB + " << 'SQL'\n")
	for _, c := range checks {
		b.WriteString(strings.TrimSpace(c.SQL) + "\nSELECT '" + sep + "';\n")
	}
	b.WriteString("SQL\n")
	return b.String()
}

// Compare checks the output of ProbeScript against the checks' wants and
// returns one error per mismatch (wrapping ErrMismatch).
func Compare(checks []Check, out string) []error {
	parts := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), sep+"\n")
	var errs []error
	for i, c := range checks {
		if i >= len(parts) {
			errs = append(errs, fmt.Errorf("%s: no output: %w", c.Name, ErrMismatch))
			continue
		}
		if got := strings.TrimSpace(parts[i]); got != c.Want {
			errs = append(errs, fmt.Errorf("%s: got %q, want %q: %w", c.Name, got, c.Want, ErrMismatch))
		}
	}
	return errs
}

func tables(names string) Check {
	return Check{"tables",
		"SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name);",
		names}
}

func columns(table, cols string) Check {
	return Check{table + " columns", "SELECT group_concat(name, ',') FROM pragma_table_info('" + table + "');", cols}
}

func count(table string, n int) Check {
	return Check{table + " rows", "SELECT COUNT(*) FROM " + table + ";", strconv.Itoa(n)}
}

func indexes(names string) Check {
	return Check{"indexes",
		"SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name);",
		names}
}

// base holds for every VM: the tutorial's rows are still there (plus the
// seeded ones) with their distinct e-mails.
func base(rows int) []Check {
	return []Check{
		count("users", 3+rows),
		count("products", 4+rows),
		count("orders", 3+rows),
		{"first users", "SELECT id || '|' || email || '|' || name FROM users WHERE id <= 3 ORDER BY id;",
			"1|alice@example.com|Alice Smith\n2|bob@example.com|Bob Jones\n3|carol@example.com|Carol White"},
		{"first products", "SELECT id || '|' || name || '|' || price || '|' || stock FROM products WHERE id <= 4 ORDER BY id;",
			"1|Laptop|999.99|50\n2|Mouse|29.99|200\n3|Keyboard|79.99|150\n4|Monitor|299.99|75"},
		{"first orders", "SELECT id || '|' || user_id || '|' || total || '|' || status FROM orders WHERE id <= 3 ORDER BY id;",
			"1|1|1029.98|completed\n2|2|29.99|pending\n3|1|379.98|shipped"},
		columns("orders", "id,user_id,total,status,created_at"),
	}
}

const (
	usersBase    = "id,email,name,created_at"
	usersPremium = usersBase + ",is_premium,premium_since"
	productsBase = "id,name,price,stock"
)

func premium(rows int, benefits bool) []Check {
	c := append(base(rows),
		columns("users", usersPremium),
		columns("products", productsBase),
		Check{"premium users", "SELECT id || '|' || email FROM users WHERE is_premium = 1 ORDER BY id;", "1|alice@example.com"},
		Check{"premium_since set", "SELECT COUNT(*) FROM users WHERE premium_since IS NOT NULL;", "1"},
	)
	if benefits {
		c = append(c, Check{"premium_benefits", "SELECT name || '|' || discount_percent FROM premium_benefits ORDER BY id;",
			"Free Shipping|0\n10% Discount|10\nPriority Support|0"})
	}
	return c
}

// Expect is what the VM with the given alias must hold after the tutorial's
// steps have run in it (Step 2 to Step 7), with rows seeded rows.
func Expect(alias string, rows int) ([]Check, error) {
	switch alias {
	case Root:
		return append(base(rows),
			tables("orders products users"),
			columns("users", usersBase),
			columns("products", productsBase),
			indexes(""),
		), nil
	case Premium:
		return append(premium(rows, true), tables("orders premium_benefits products users"), indexes("")), nil
	case Risky:
		return append(premium(rows, false), tables("orders products users"), indexes("")), nil
	case ApproachA:
		return append(premium(rows, false), tables("orders products users"), indexes("idx_users_premium")), nil
	case ApproachB:
		return append(premium(rows, false), tables("orders premium_users products users"), indexes(""),
			Check{"premium_users", "SELECT user_id FROM premium_users;", "1"}), nil
	case Inventory:
		return append(base(rows),
			tables("inventory_movements orders products suppliers users"),
			columns("users", usersBase),
			columns("products", productsBase+",reorder_level,supplier_id"),
			columns("suppliers", "id,name,contact_email"),
			columns("inventory_movements", "id,product_id,quantity_change,reason,created_at"),
			Check{"suppliers", "SELECT id || '|' || name || '|' || contact_email FROM suppliers ORDER BY id;",
				"1|Tech Supplies Inc|orders@techsupplies.example\n2|Office Depot|sales@officedepot.example"},
			Check{"supplier_id", "SELECT group_concat(supplier_id, ',') FROM (SELECT supplier_id FROM products WHERE id <= 4 ORDER BY id);", "1,1,1,2"},
			Check{"reorder_level", "SELECT COUNT(*) FROM products WHERE reorder_level = 10;", strconv.Itoa(4 + rows)},
			count("inventory_movements", 0),
			indexes(""),
		), nil
	case Analytics:
		return append(base(rows),
			tables("daily_stats orders page_views products user_sessions users"),
			columns("users", usersBase),
			columns("products", productsBase),
			columns("user_sessions", "id,user_id,session_start,session_end,pages_viewed"),
			Check{"page_views", "SELECT user_id || '|' || page_path FROM page_views ORDER BY id;",
				"1|/products\n1|/products/1\n2|/cart\n3|/checkout"},
			Check{"daily_stats", "SELECT date || '|' || total_orders || '|' || total_revenue || '|' || new_users FROM daily_stats ORDER BY date;",
				"2024-01-15|45|12500|12\n2024-01-16|52|15200|8"},
			count("user_sessions", 0),
			indexes(""),
		), nil
	}
	return nil, fmt.Errorf("no expected state for %q: %w", alias, ErrMismatch)
}

// Interval is the guest time span of a migration, from Script's timestamps.
type Interval struct{ Start, End int64 }

// ParseInterval finds Script's start and end timestamps in its output.
func ParseInterval(out string) (Interval, error) {
	var iv Interval
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MIGRATION-START":
			iv.Start = n
		case "MIGRATION-END":
			iv.End = n
		}
	}
	if iv.Start == 0 || iv.End == 0 || iv.End < iv.Start {
		return iv, fmt.Errorf("no migration timestamps in the output: %w", ErrMismatch)
	}
	return iv, nil
}

// Overlap is how long all the intervals ran at the same time (0 if never).
func Overlap(ivs []Interval) int64 {
	if len(ivs) == 0 {
		return 0
	}
	lo, hi := ivs[0].Start, ivs[0].End
	for _, iv := range ivs[1:] {
		lo, hi = max(lo, iv.Start), min(hi, iv.End)
	}
	return max(0, hi-lo)
}
