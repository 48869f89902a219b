package project

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"vers/internal/errdefs"
)

func TestInitWritesDefaultsAndKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	wrote, err := Init(dir)
	if err != nil || !wrote {
		t.Fatalf("Init = %v, %v", wrote, err)
	}
	p, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Config != Defaults() {
		t.Fatalf("config = %+v", p.Config)
	}
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte("[machine]\nmem_size_mib = 1024\n"), 0o644)
	if wrote, err := Init(dir); err != nil || wrote {
		t.Fatalf("second Init = %v, %v; must leave vers.toml alone", wrote, err)
	}
	p, _ = Load(dir)
	if p.Config.Machine.MemMiB != 1024 || p.Config.Machine.VCPUs != 1 {
		t.Fatalf("config = %+v", p.Config)
	}
}

func TestTutorialConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`[machine]
mem_size_mib = 1024
vcpu_count = 1
fs_size_vm_mib = 2048

[rootfs]
name = "default"

[kernel]
name = "default.bin"
`), 0o644)
	sub := filepath.Join(dir, "a", "b")
	os.MkdirAll(sub, 0o755)
	p, err := Find(sub)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Config
	if p.Dir != dir || c.Machine.MemMiB != 1024 || c.Machine.VCPUs != 1 || c.Machine.FsMiB != 2048 || c.Rootfs.Name != "default" || c.Kernel.Name != "default.bin" {
		t.Fatalf("got %+v in %s", c, p.Dir)
	}
	// The tutorial's vers.toml has no [network]: VMs are isolated.
	if c.Network.Mode != "isolated" {
		t.Fatalf("network mode %q, want isolated", c.Network.Mode)
	}
}

func TestNetworkMode(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte("[network]\nmode = \"none\"\n"), 0o644)
	p, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.Network.Mode != "none" {
		t.Fatalf("network mode %q, want none", p.Config.Network.Mode)
	}
}

func TestBadConfig(t *testing.T) {
	for name, body := range map[string]string{
		"syntax":  "[machine\n",
		"unknown": "[machine]\nmem_sise_mib = 3\n",
		"type":    "[machine]\nmem_size_mib = \"lots\"\n",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(body), 0o644)
		if _, err := Load(dir); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Find(t.TempDir()); !errors.Is(err, ErrNoProject) || !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no project: err = %v", err)
	}
}

func TestHead(t *testing.T) {
	dir := t.TempDir()
	Init(dir)
	p, _ := Load(dir)
	if h, err := p.Head(); h != "" || err != nil {
		t.Fatalf("empty head = %q, %v", h, err)
	}
	p.SetHead("abc")
	if h, _ := p.Head(); h != "abc" {
		t.Fatalf("head = %q", h)
	}
}

// A .vers that links out of the project directory is not written through.
func TestSetHeadStaysInside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	Init(dir)
	p, _ := Load(dir)
	os.RemoveAll(filepath.Join(dir, StateDir))
	if err := os.Symlink(outside, filepath.Join(dir, StateDir)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetHead("abc"); err == nil {
		t.Fatal("SetHead wrote through a link out of the project")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
}
