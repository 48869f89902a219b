package daemon

import "testing"

func TestFixedLayout(t *testing.T) {
	for _, c := range []struct {
		aslr, accel string
		want        bool
	}{
		{"", "tcg", true}, {"", "kvm", false},
		{"on", "tcg", false}, {"on", "kvm", false},
		{"off", "tcg", true}, {"off", "kvm", true},
	} {
		if got := fixedLayout(c.aslr, c.accel); got != c.want {
			t.Errorf("VERS_EXEC_ASLR=%q on %s: fixed layout %v, want %v", c.aslr, c.accel, got, c.want)
		}
	}
}
