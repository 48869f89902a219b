package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigureRoot assembles a small fake debootstrap tree, with merged-usr
// links and an absolute resolv.conf link pointing at the host, and checks
// the result and that nothing was written outside the tree.
func TestConfigureRoot(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir()
	hostResolv := filepath.Join(host, "resolv.conf")
	os.WriteFile(hostResolv, []byte("host resolver\n"), 0o644)
	for _, d := range []string{"usr/sbin", "usr/bin", "etc/apt", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Symlink("usr/sbin", filepath.Join(root, "sbin"))
	os.Symlink(hostResolv, filepath.Join(root, "etc/resolv.conf"))
	files := map[string]string{
		"etc/apt/sources.list": "deb http://mirror/debian bookworm main\n",
		"var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "lists",
		"var/lib/apt/lists/lock":                    "",
		"var/cache/apt/pkgcache.bin":                "cache",
		"var/cache/apt/archives/bash_5.2_amd64.deb": "deb",
		"var/log/apt/term.log":                      "log",
		"tmp/junk":                                  "junk",
		"etc/machine-id":                            "0123456789abcdef\n",
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := configureRoot(root, []byte("AGENT")); err != nil {
		t.Fatal(err)
	}

	if b, _ := os.ReadFile(hostResolv); string(b) != "host resolver\n" {
		t.Fatalf("host file written through a guest symlink: %q", b)
	}
	fi, err := os.Stat(filepath.Join(root, "usr/sbin/vers-agent"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("agent: %v, %v", fi, err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/sbin/init")); l != "vers-agent" {
		t.Errorf("/sbin/init -> %q", l)
	}
	want := map[string]string{
		"etc/resolv.conf": "nameserver 10.0.2.3\n",
		"etc/hostname":    "vers\n",
		"etc/machine-id":  "",
	}
	for p, w := range want {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != w {
			t.Errorf("%s = %q, %v; want %q", p, b, err, w)
		}
	}
	src, _ := os.ReadFile(filepath.Join(root, "etc/apt/sources.list.d/debian.sources"))
	for _, w := range []string{"bookworm bookworm-updates", "debian-security", "bookworm-security", "Signed-By:"} {
		if !strings.Contains(string(src), w) {
			t.Errorf("debian.sources lacks %q", w)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "root/.bashrc")); !strings.Contains(string(b), "PS1=") {
		t.Error("no prompt in /root/.bashrc")
	}
	if fi, _ := os.Stat(filepath.Join(root, "root")); fi == nil || fi.Mode().Perm() != 0o700 {
		t.Error("/root is not 0700")
	}
	for _, gone := range []string{"etc/apt/sources.list", "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
		"var/cache/apt/pkgcache.bin", "var/cache/apt/archives/bash_5.2_amd64.deb", "var/log/apt/term.log", "tmp/junk"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s not cleaned", gone)
		}
	}
	for _, kept := range []string{"var/lib/apt/lists/partial", "var/lib/apt/lists/lock", "var/cache/apt/archives/partial"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s removed; apt needs it", kept)
		}
	}
}
