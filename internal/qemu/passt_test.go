package qemu

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"vers/internal/agent/guest"
)

func TestPasstArgs(t *testing.T) {
	c := baseConfig()
	want := `--foreground --quiet
--fd 3
--ipv4-only
--address 10.0.2.15 --netmask 24 --gateway 10.0.2.2
--no-map-gw
--dns-forward 10.0.2.3
--tcp-ports none --udp-ports none
--no-dhcp`
	got := strings.Join(passtArgs(c), " ")
	if got != strings.ReplaceAll(want, "\n", " ") {
		t.Fatalf("passtArgs:\n got: %s\nwant: %s", got, want)
	}
	// What isolates the guest, each named once more so that no edit drops it.
	for _, must := range []string{"--no-map-gw", "--tcp-ports none", "--udp-ports none", "--ipv4-only"} {
		if !strings.Contains(got, must) {
			t.Errorf("passt runs without %s", must)
		}
	}
}

// The driver's passt and the agent's static configuration describe the same
// network.
func TestPasstMatchesGuest(t *testing.T) {
	g := guest.DefaultNet
	ones, _ := g.Addr.Mask.Size()
	for _, c := range []struct {
		what      string
		got, want string
	}{
		{"address", guestAddr, g.Addr.IP.String()},
		{"gateway", guestGateway, g.Gateway.String()},
		{"dns", guestDNS, g.DNS.String()},
	} {
		if net.ParseIP(c.got).String() != c.want {
			t.Errorf("%s: passt %s, guest %s", c.what, c.got, c.want)
		}
	}
	if ones != guestPrefix {
		t.Errorf("prefix: passt /%d, guest /%d", guestPrefix, ones)
	}
}

func TestProcID(t *testing.T) {
	id := procID{pid: 4242, start: 123456789}
	if got, ok := parseProcID([]byte(id.String())); !ok || got != id {
		t.Fatalf("parseProcID(%q) = %+v, %v", id.String(), got, ok)
	}
	for _, bad := range []string{"", "4242", "4242\n", "x 1", "4242 y", "0 5", "-3 5", "1 2 3"} {
		if got, ok := parseProcID([]byte(bad)); ok {
			t.Errorf("parseProcID(%q) = %+v, want a refusal", bad, got)
		}
	}
}

func TestStatStart(t *testing.T) {
	// A command name with a space and a parenthesis, as /proc shows it.
	stat := "1234 (pa) ss t) S 1 1234 1234 0 -1 4194560 500 0 0 0 3 4 0 0 20 0 1 0 987654 10000000 300 18446744073709551615"
	if got, ok := statStart([]byte(stat)); !ok || got != 987654 {
		t.Fatalf("statStart = %d, %v; want 987654", got, ok)
	}
	if _, ok := statStart([]byte("1234 (passt) S 1 2")); ok {
		t.Fatal("statStart of a short stat succeeded")
	}
	// The live process: this one.
	self, ok := procStart(os.Getpid())
	if !ok || self.start == 0 || !self.running() {
		t.Fatalf("procStart(self) = %+v, %v", self, ok)
	}
	if (procID{pid: self.pid, start: self.start + 1}).running() {
		t.Fatal("a process with another start time was taken for this one")
	}
}

func TestSeccompMode(t *testing.T) {
	tests := []struct {
		status string
		mode   int
		ok     bool
	}{
		{"Name:\tpasst\nSeccomp:\t2\nSeccomp_filters:\t1\n", 2, true},
		{"Name:\tpasst\nSeccomp:\t0\nSeccomp_filters:\t0\n", 0, true},
		{"Name:\tpasst\n", 0, false},
	}
	for _, tt := range tests {
		mode, ok := seccompMode([]byte(tt.status))
		if mode != tt.mode || ok != tt.ok {
			t.Errorf("seccompMode(%q) = %d, %v; want %d, %v", tt.status, mode, ok, tt.mode, tt.ok)
		}
	}
}

func TestParseNetMode(t *testing.T) {
	for in, want := range map[string]NetMode{"": NetIsolated, "isolated": NetIsolated, "none": NetNone} {
		if got, err := ParseNetMode(in); err != nil || got != want {
			t.Errorf("ParseNetMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"user", "unplugged", "Isolated", "tap"} {
		if _, err := ParseNetMode(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseNetMode(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestUnplugged(t *testing.T) {
	for in, want := range map[NetMode]NetMode{"": NetUnplugged, NetIsolated: NetUnplugged, NetNone: NetNone, NetUnplugged: NetUnplugged} {
		if got := in.Unplugged(); got != want {
			t.Errorf("%q.Unplugged() = %q, want %q", in, got, want)
		}
	}
}
