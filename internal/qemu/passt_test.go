package qemu

import (
	"errors"
	"net"
	"strings"
	"testing"

	"vers/internal/agent/guest"
)

func TestPasstArgs(t *testing.T) {
	c := baseConfig()
	want := `--foreground --quiet
--log-file /v/vm1/passt.log
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

func TestPasstCmdlineMatches(t *testing.T) {
	c := baseConfig()
	own := append([]string{"passt"}, passtArgs(c)...)
	other := baseConfig()
	other.Dir = "/v/vm2"
	tests := []struct {
		name string
		argv []string
		want bool
	}{
		{"own", own, true},
		{"own, exec'd into its CPU variant", append([]string{"/usr/bin/passt.avx2"}, passtArgs(c)...), true},
		{"other vm", append([]string{"passt"}, passtArgs(other)...), false},
		{"not passt", append([]string{"/bin/sleep"}, passtArgs(c)...), false},
		{"qemu of the vm", append([]string{"qemu-system-x86_64"}, c.Args()...), false},
		{"log file as another option's value", []string{"passt", "--pcap", "--log-file", "x", c.PasstLog()}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := passtCmdlineMatches(tt.argv, c); got != tt.want {
			t.Errorf("%s: passtCmdlineMatches = %v, want %v", tt.name, got, tt.want)
		}
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
