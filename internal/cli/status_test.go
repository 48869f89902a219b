package cli

import (
	"bytes"
	"testing"
	"time"

	"vers/api"
)

func TestRenderTree(t *testing.T) {
	t0 := time.Unix(1000, 0)
	vm := func(id, alias, parent string, age int) api.VM {
		return api.VM{ID: id, Alias: alias, ParentID: parent, State: "running", CreatedAt: t0.Add(time.Duration(age) * time.Second)}
	}
	tests := []struct {
		name string
		vms  []api.VM
		head string
		want string
	}{
		{"empty-ish single", []api.VM{vm("id-root", "db-root", "", 0)}, "id-root",
			"  VM       STATE    ID\n* db-root  running  id-root\n"},
		{"tree", []api.VM{
			vm("r", "db-root", "", 0),
			vm("c3", "migration-analytics", "r", 3),
			vm("c1", "migration-premium", "r", 1),
			vm("g1", "premium-risky-change", "c1", 4),
			vm("c2", "migration-inventory", "r", 2),
			vm("other", "", "", 5),
		}, "g1",
			"  VM                          STATE    ID\n" +
				"  db-root                     running  r\n" +
				"  ├─ migration-premium        running  c1\n" +
				"* │  └─ premium-risky-change  running  g1\n" +
				"  ├─ migration-inventory      running  c2\n" +
				"  └─ migration-analytics      running  c3\n" +
				"  (other)                     running  other\n"},
		{"orphan shown as root", []api.VM{vm("c", "kid", "gone", 0)}, "",
			"  VM   STATE    ID\n  kid  running  c\n"},
		{"sleeping, and VMs from a commit", []api.VM{
			vm("r", "db-root", "", 0),
			func() api.VM { v := vm("s", "sleepy", "r", 1); v.State = api.StateSleeping; return v }(),
			func() api.VM { v := vm("t", "try-a", "", 2); v.OriginCommit = "3f9a2c1b7e4d" + "aaaa"; return v }(),
			func() api.VM { v := vm("u", "try-a-1", "t", 3); v.OriginCommit = "3f9a2c1b7e4daaaa"; return v }(),
		}, "t",
			"  VM          STATE     ID  ORIGIN\n" +
				"  db-root     running   r   -\n" +
				"  └─ sleepy   sleeping  s   -\n" +
				"* try-a       running   t   from 3f9a2c1b7e4d\n" +
				"  └─ try-a-1  running   u   from 3f9a2c1b7e4d\n"},
		{"a VM lost in a host restart says so", []api.VM{
			func() api.VM {
				v := vm("d", "db", "", 0)
				v.State, v.StateReason = api.StateDead, "lost: gone"
				return v
			}(),
		}, "",
			"  VM  STATE  ID\n  db  dead   d\ndb is dead: lost: gone\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		RenderTree(&b, tt.vms, tt.head)
		if b.String() != tt.want {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", tt.name, b.String(), tt.want)
		}
	}
}
