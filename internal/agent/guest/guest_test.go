package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline(`console=ttyS0 quiet vers.root=/dev/vdb vers.hostname="db-1" vers.root=/dev/vdc` + "\n")
	for k, want := range map[string]string{"vers.root": "/dev/vdc", "vers.hostname": "db-1", "quiet": "", "console": "ttyS0"} {
		if got, ok := c[k]; !ok || got != want {
			t.Errorf("%s = %q (%v), want %q", k, got, ok, want)
		}
	}
	if c.Get("vers.missing", "def") != "def" || c.Get("quiet", "def") != "def" {
		t.Error("Get does not fall back")
	}
}

func TestModuleList(t *testing.T) {
	got := moduleList("virtio_mmio.ko\n# comment\n\n  virtio_blk.ko \next4.ko")
	want := []string{"virtio_mmio.ko", "virtio_blk.ko", "ext4.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestHostsWith(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "127.0.0.1\tlocalhost\n127.0.1.1\tvm\n"},
		{"127.0.0.1 localhost\n", "127.0.0.1 localhost\n127.0.1.1\tvm\n"},
		{"127.0.0.1 localhost\n127.0.1.1 old\n::1 localhost\n", "127.0.0.1 localhost\n127.0.1.1\tvm\n::1 localhost\n"},
		{"127.0.0.1 localhost\n127.0.1.1 a\n127.0.1.1 b\n", "127.0.0.1 localhost\n127.0.1.1\tvm\n"},
	}
	for _, tt := range tests {
		if got := hostsWith(tt.in, "vm"); got != tt.want {
			t.Errorf("hostsWith(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBlocksFor(t *testing.T) {
	if got := blocksFor(2*1024*1024, 4096); got != 262144 { // 1 GiB
		t.Fatalf("got %d", got)
	}
}

// SetupNetwork configures a fresh network namespace through rtnetlink.
func TestSetupNetworkInNamespace(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		// This thread enters a new namespace and is never given back.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		cfg := DefaultNet
		cfg.Iface = "lo" // the only interface of a new namespace
		cfg.DNS, cfg.Sysfs = nil, ""
		if err := SetupNetwork(cfg, time.Second); err != nil {
			errc <- err
			return
		}
		ifc, err := net.InterfaceByName("lo")
		if err != nil {
			errc <- err
			return
		}
		addrs, _ := ifc.Addrs()
		var s []string
		for _, a := range addrs {
			s = append(s, a.String())
		}
		if ifc.Flags&net.FlagUp == 0 || !strings.Contains(strings.Join(s, " "), "10.0.2.15/24") {
			errc <- &net.AddrError{Err: "lo not configured: " + strings.Join(s, " ") + " " + ifc.Flags.String()}
			return
		}
		// Configuring twice is harmless (a restarted agent does it again).
		errc <- SetupNetwork(cfg, time.Second)
	}()
	if err := <-errc; err != nil {
		if err == unix.EPERM {
			t.Skip("no permission to create a network namespace")
		}
		t.Fatal(err)
	}
}

func TestHasNetDevice(t *testing.T) {
	write := func(t *testing.T, sys, dev, id string) {
		t.Helper()
		dir := filepath.Join(sys, "bus/virtio/devices", dev)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "device"), []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		devs map[string]string // device dir -> id
		want bool
	}{
		{"no virtio bus", nil, false},
		{"block, console, rng", map[string]string{"virtio0": "0x0002", "virtio1": "0x0003", "virtio2": "0x0004"}, false},
		{"a network card among others", map[string]string{"virtio0": "0x0002", "virtio1": "0x0001"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := t.TempDir()
			for dev, id := range tt.devs {
				write(t, sys, dev, id)
			}
			if got := hasNetDevice(sys); got != tt.want {
				t.Errorf("hasNetDevice = %v, want %v", got, tt.want)
			}
		})
	}
}

// With no network device, SetupNetwork does not wait for an interface.
func TestSetupNetworkWithoutDevice(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		cfg := DefaultNet
		cfg.Sysfs = t.TempDir() // lists no device
		start := time.Now()
		err := SetupNetwork(cfg, 10*time.Second)
		if err == nil || !errors.Is(err, ErrNoNetDevice) {
			errc <- fmt.Errorf("SetupNetwork = %v, want ErrNoNetDevice", err)
			return
		}
		if d := time.Since(start); d > time.Second {
			errc <- fmt.Errorf("SetupNetwork took %v: it waited for an interface", d)
			return
		}
		lo, err := net.InterfaceByName("lo")
		if err == nil && lo.Flags&net.FlagUp == 0 {
			err = errors.New("lo is not up")
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		if err == unix.EPERM {
			t.Skip("no permission to create a network namespace")
		}
		t.Fatal(err)
	}
}

func TestRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	if err := Rewrite(path, []byte("127.0.1.1\tlong-name\n"), 0, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if before.Mode().Perm() != 0o644 {
		t.Errorf("created with mode %v", before.Mode())
	}
	for _, text := range []string{"127.0.1.1\tvm\n", "127.0.1.1\ta-longer-name-again\n"} {
		old, _ := os.ReadFile(path)
		if err := Rewrite(path, []byte(text), len(old), 0o644); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		after, _ := os.Stat(path)
		if string(b) != text {
			t.Errorf("file holds %q, want %q", b, text)
		}
		if !os.SameFile(before, after) {
			t.Error("the file was replaced, not rewritten")
		}
	}
}
