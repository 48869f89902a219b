// Package tutorial is the database tutorial (docs' TUTORIAL: set up SQLite in
// db-root, branch three times, apply three migrations) as data: the project
// config, the guest scripts of every step and what each VM must hold
// afterwards. The end-to-end test and the demo both run it from here, so they
// cannot drift apart. It never starts processes or talks to vers itself.
package tutorial

import (
	"fmt"
	"strings"
)

// Config is the tutorial's vers.toml, as the user is told to write it.
const Config = `[machine]
mem_size_mib = 1024
vcpu_count = 1
fs_size_vm_mib = 2048

[rootfs]
name = "default"

[kernel]
name = "default.bin"
`

// Aliases of the tutorial's VMs.
const (
	Root       = "db-root"
	Premium    = "migration-premium"
	Inventory  = "migration-inventory"
	Analytics  = "migration-analytics"
	Risky      = "premium-risky-change"
	ApproachA  = "feature-approach-a"
	ApproachB  = "feature-approach-b"
	DB         = "/app/db/ecommerce.db"
	ShowState  = "/app/show-state.sh"
	TablesCmd  = "sqlite3 /app/db/ecommerce.db '.tables'"
	SetupTitle = "Set up SQLite, the base schema and the helper script"
)

// The tutorial's setup, block by block. The "Configure DNS if needed" line
// (a public resolver written to /etc/resolv.conf) is left out: the guest's
// resolver already works, and a VM must not depend on outside addresses.
const installBlock = `# Install SQLite
apt-get update && apt-get install -y sqlite3

# Create working directory
mkdir -p /app/db
cd /app
`

const schemaBlock = `# Create the e-commerce database with base schema
sqlite3 /app/db/ecommerce.db << 'EOF'
-- Users table
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);

-- Products table
CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    stock INTEGER DEFAULT 0
);

-- Orders table
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES users(id),
    total DECIMAL(10,2),
    status TEXT DEFAULT 'pending',
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);

-- Insert sample data
INSERT INTO users (email, name) VALUES
    ('alice@example.com', 'Alice Smith'),
    ('bob@example.com', 'Bob Jones'),
    ('carol@example.com', 'Carol White');

INSERT INTO products (name, price, stock) VALUES
    ('Laptop', 999.99, 50),
    ('Mouse', 29.99, 200),
    ('Keyboard', 79.99, 150),
    ('Monitor', 299.99, 75);

INSERT INTO orders (user_id, total, status) VALUES
    (1, 1029.98, 'completed'),
    (2, 29.99, 'pending'),
    (1, 379.98, 'shipped');

SELECT 'Database created with ' || COUNT(*) || ' users' FROM users;
SELECT 'And ' || COUNT(*) || ' products' FROM products;
SELECT 'And ' || COUNT(*) || ' orders' FROM orders;
EOF
`

const helperBlock = `# Script to show database state
cat > /app/show-state.sh << 'EOF'
#!/bin/bash
echo "=== Database State ==="
echo ""
echo "Users:"
sqlite3 /app/db/ecommerce.db "SELECT * FROM users;"
echo ""
echo "Products:"
sqlite3 /app/db/ecommerce.db "SELECT * FROM products;"
echo ""
echo "Orders:"
sqlite3 /app/db/ecommerce.db "SELECT * FROM orders;"
echo ""
echo "Tables in database:"
sqlite3 /app/db/ecommerce.db ".tables"
EOF
chmod +x /app/show-state.sh

# Verify setup
/app/show-state.sh
`

// seedBlock adds n generated users, products and orders, so that the cost of
// the setup (and of repeating it) can be made realistic. Every order belongs
// to an existing user.
func seedBlock(n int) string {
	return fmt.Sprintf(`# Seed test data: %[1]d generated users, products and orders
sqlite3 /app/db/ecommerce.db << 'EOF'
BEGIN;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %[1]d)
INSERT INTO users (email, name) SELECT 'user' || n || '@seed.example', 'Seed User ' || n FROM seq;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %[1]d)
INSERT INTO products (name, price, stock) SELECT 'Seed Product ' || n, (n %% 1000) + 0.99, n %% 500 FROM seq;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %[1]d)
INSERT INTO orders (user_id, total, status)
    SELECT 1 + (n %% (SELECT COUNT(*) FROM users)), (n %% 5000) + 0.5,
           CASE n %% 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'shipped' ELSE 'completed' END FROM seq;
COMMIT;
SELECT 'Seeded to ' || COUNT(*) || ' users' FROM users;
EOF
`, n)
}

// Setup is the script run in db-root by `vers connect` (Step 2), ending with
// the tutorial's `exit` (Step 3). rows > 0 seeds that many extra users,
// products and orders after the base schema.
func Setup(rows int) string {
	var b strings.Builder
	b.WriteString(installBlock + "\n" + schemaBlock + "\n")
	if rows > 0 {
		b.WriteString(seedBlock(rows) + "\n")
	}
	b.WriteString(helperBlock + "\n# Exit the VM\nexit\n")
	return b.String()
}

// Migration is one of Step 4's three migrations.
type Migration struct {
	Alias string // the branch it is applied in
	Title string
	SQL   string // the body of the tutorial's heredoc
	// Done is the line the migration's final SELECT prints.
	Done string
}

// Script is what `vers connect` runs in the migration's branch: the
// tutorial's heredoc, the state, and exit. Guest timestamps (ns since the
// epoch) before and after the migration bracket it, so runs can be shown to
// overlap.
func (m Migration) Script() string {
	// The stamps bracket the migration and its check (show-state), the
	// tutorial's "apply + test": what runs in parallel in Step 4.
	return "echo \"MIGRATION-START $(date +%s%N)\"\n" +
		"sqlite3 /app/db/ecommerce.db << 'EOF'\n" + m.SQL + "EOF\n\n" +
		ShowState + "\n" +
		"echo \"MIGRATION-END $(date +%s%N)\"\n" +
		"exit\n"
}

// Migrations are Step 4's migrations, in the tutorial's order.
var Migrations = []Migration{
	{
		Alias: Premium,
		Title: "Migration A: premium user features",
		Done:  "Premium migration complete. Premium users: 1",
		SQL: `-- Add premium tier to users
ALTER TABLE users ADD COLUMN is_premium BOOLEAN DEFAULT 0;
ALTER TABLE users ADD COLUMN premium_since DATETIME;

-- Create premium benefits table
CREATE TABLE premium_benefits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    discount_percent INTEGER DEFAULT 0
);

INSERT INTO premium_benefits (name, discount_percent) VALUES
    ('Free Shipping', 0),
    ('10% Discount', 10),
    ('Priority Support', 0);

-- Upgrade Alice to premium
UPDATE users SET is_premium = 1, premium_since = CURRENT_TIMESTAMP WHERE id = 1;

SELECT 'Premium migration complete. Premium users: ' || COUNT(*) FROM users WHERE is_premium = 1;
`,
	},
	{
		Alias: Inventory,
		Title: "Migration B: inventory management",
		Done:  "Inventory migration complete. Suppliers: 2",
		SQL: `-- Add inventory tracking
ALTER TABLE products ADD COLUMN reorder_level INTEGER DEFAULT 10;
ALTER TABLE products ADD COLUMN supplier_id INTEGER;

-- Create suppliers table
CREATE TABLE suppliers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    contact_email TEXT
);

-- Create inventory movements table
CREATE TABLE inventory_movements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id INTEGER REFERENCES products(id),
    quantity_change INTEGER NOT NULL,
    reason TEXT,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO suppliers (name, contact_email) VALUES
    ('Tech Supplies Inc', 'orders@techsupplies.example'),
    ('Office Depot', 'sales@officedepot.example');

UPDATE products SET supplier_id = 1 WHERE id IN (1, 2, 3);
UPDATE products SET supplier_id = 2 WHERE id = 4;

SELECT 'Inventory migration complete. Suppliers: ' || COUNT(*) FROM suppliers;
`,
	},
	{
		Alias: Analytics,
		Title: "Migration C: analytics tables",
		Done:  "Analytics migration complete. Page views: 4",
		SQL: `-- Create analytics schema
CREATE TABLE page_views (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES users(id),
    page_path TEXT NOT NULL,
    viewed_at DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE user_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES users(id),
    session_start DATETIME NOT NULL,
    session_end DATETIME,
    pages_viewed INTEGER DEFAULT 0
);

CREATE TABLE daily_stats (
    date DATE PRIMARY KEY,
    total_orders INTEGER DEFAULT 0,
    total_revenue DECIMAL(10,2) DEFAULT 0,
    new_users INTEGER DEFAULT 0
);

-- Insert sample analytics data
INSERT INTO page_views (user_id, page_path) VALUES
    (1, '/products'),
    (1, '/products/1'),
    (2, '/cart'),
    (3, '/checkout');

INSERT INTO daily_stats (date, total_orders, total_revenue, new_users) VALUES
    ('2024-01-15', 45, 12500.00, 12),
    ('2024-01-16', 52, 15200.00, 8);

SELECT 'Analytics migration complete. Page views: ' || COUNT(*) FROM page_views;
`,
	},
}

// RiskyChange is Step 7's risky migration, applied in premium-risky-change
// only: migration-premium must keep its premium_benefits.
const RiskyChange = `sqlite3 /app/db/ecommerce.db << 'EOF'
DROP TABLE premium_benefits;
SELECT 'Risky change applied: premium_benefits dropped';
EOF
exit
`

// ApproachAChange and ApproachBChange are Step 7's two implementations of one
// feature (fast lookup of premium users): an index, or a separate table.
const (
	ApproachAChange = `sqlite3 /app/db/ecommerce.db << 'EOF'
CREATE INDEX idx_users_premium ON users(is_premium);
SELECT 'Approach A: index on users.is_premium';
EOF
exit
`
	ApproachBChange = `sqlite3 /app/db/ecommerce.db << 'EOF'
CREATE TABLE premium_users AS SELECT id AS user_id, premium_since FROM users WHERE is_premium = 1;
SELECT 'Approach B: premium_users table with ' || COUNT(*) || ' rows' FROM premium_users;
EOF
exit
`
)
