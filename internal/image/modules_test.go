package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleDep = `kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/fs/mbcache.ko.xz:
kernel/fs/jbd2/jbd2.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
kernel/needs-gone.ko: kernel/gone.ko
`

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"ext4.ko.xz":     "ext4",
		"crc32c-intel":   "crc32c_intel",
		"jbd2.ko.zst":    "jbd2",
		"virtio_net.ko":  "virtio_net",
		"kernel/x.ko.gz": "x",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	g, err := ParseModulesDep(strings.NewReader(sampleDep))
	if err != nil {
		t.Fatal(err)
	}
	if g.Files["virtio_rng"] != "kernel/drivers/char/hw_random/virtio-rng.ko" {
		t.Fatalf("virtio_rng file = %q", g.Files["virtio_rng"])
	}
	tests := []struct {
		name    string
		builtin []string
		want    []string
		order   []string
		err     string
	}{
		{
			name:  "guest set",
			want:  []string{"virtio_mmio", "virtio_blk", "ext4", "virtio_net", "virtio-rng"},
			order: []string{"virtio", "virtio_ring", "virtio_mmio", "virtio_blk", "crc16", "jbd2", "mbcache", "ext4", "failover", "net_failover", "virtio_net", "virtio_rng"},
		},
		{
			name:    "built-in modules and their subtrees are skipped",
			builtin: []string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/block/virtio_blk.ko"},
			want:    []string{"virtio_mmio", "virtio_blk", "virtio_rng"},
			order:   []string{"virtio_rng"},
		},
		{name: "each module once", want: []string{"jbd2", "ext4", "jbd2"}, order: []string{"jbd2", "crc16", "mbcache", "ext4"}},
		{name: "cycle", want: []string{"a"}, err: "cycle"},
		{name: "missing dependency", want: []string{"needs_gone"}, err: "gone (needed by needs_gone)"},
		{name: "missing module", want: []string{"nope"}, err: "nope is neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			builtin, _ := ParseBuiltin(strings.NewReader(strings.Join(tt.builtin, "\n")))
			got, err := LoadOrder(g, builtin, tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.order) {
				t.Fatalf("order = %v\nwant    %v", got, tt.order)
			}
		})
	}
}

func TestModInfo(t *testing.T) {
	info, err := ModInfo(fakeModule("license=GPL", "depends=jbd2,mbcache,crc16", "softdep=pre: crypto-crc32c", "name=ext4"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ModInfoDeps(info); !reflect.DeepEqual(got, []string{"jbd2", "mbcache", "crc16"}) {
		t.Errorf("deps = %v", got)
	}
	if got := ModInfoDeps(map[string][]string{"depends": {""}}); len(got) != 0 {
		t.Errorf("empty depends = %v", got)
	}
	if _, err := ModInfo([]byte("junk")); !errors.Is(err, ErrInvalid) {
		t.Errorf("junk: err = %v", err)
	}
}

// TestModuleGraphFromModinfo checks the path used with Debian's package,
// which has no modules.dep: dependencies come from each module's .modinfo,
// compressed modules are read through their decompressor, built-ins are
// skipped.
func TestModuleGraphFromModinfo(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernel/drivers/virtio/virtio.ko", fakeModule("depends=", "name=virtio"))
	write("kernel/drivers/virtio/virtio_ring.ko", fakeModule("depends=", "name=virtio_ring"))
	write("kernel/drivers/block/virtio_blk.ko", fakeModule("depends=virtio,virtio_ring", "name=virtio_blk"))
	write("kernel/fs/ext4/ext4.ko.gz", gz(fakeModule("depends=jbd2,crc16", "name=ext4")))
	write("kernel/fs/jbd2/jbd2.ko", fakeModule("depends=", "name=jbd2"))
	write("kernel/drivers/char/hw_random/virtio-rng.ko", fakeModule("depends=virtio_ring,virtio", "name=virtio_rng"))
	write("kernel/unrelated.ko", []byte("never read: not even ELF"))
	write("modules.builtin", []byte("kernel/lib/crc16.ko\n"))

	want := []string{"virtio_blk", "ext4", "virtio_rng"}
	g, builtin, err := moduleGraph(dir, want)
	if err != nil {
		t.Fatal(err)
	}
	order, err := LoadOrder(g, builtin, want)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "virtio virtio_ring virtio_blk jbd2 ext4 virtio_rng" {
		t.Fatalf("order = %s", got)
	}
	ko, err := decompressModule(context.Background(), g.Files["ext4"], mustRead(t, filepath.Join(dir, g.Files["ext4"])))
	if err != nil || !strings.HasPrefix(string(ko), "\x7fELF") {
		t.Fatalf("ext4.ko.gz not decompressed: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVersionedKernel(t *testing.T) {
	for in, want := range map[string][2]string{
		"linux-image-6.1.0-56-amd64 (= 6.1.192-2)":                   {"linux-image-6.1.0-56-amd64", "6.1.192-2"},
		"linux-image-6.1.0-56-amd64 (= 6.1.192-2), firmware-x | foo": {"linux-image-6.1.0-56-amd64", "6.1.192-2"},
		"foo, linux-image-6.12.1-amd64-unsigned | linux-image-x":     {"linux-image-6.12.1-amd64-unsigned", ""},
		"linux-image-6.1.0-56-amd64 (>= 6.1)":                        {"linux-image-6.1.0-56-amd64", ""},
		"":                                                           {"", ""},
		"foo":                                                        {"", ""},
	} {
		if pkg, ver := versionedKernel(in); pkg != want[0] || ver != want[1] {
			t.Errorf("versionedKernel(%q) = %q, %q; want %q", in, pkg, ver, want)
		}
	}
}
