package buildid

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestOfTellsBuildsApart(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, []byte("build one"), 0o755); err != nil {
		t.Fatal(err)
	}
	id1, err := Of(a)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Of(a); again != id1 {
		t.Fatalf("the same file gave %s and %s", id1, again)
	}
	// A rebuild writes a new file in its place (go build renames over it).
	tmp := filepath.Join(dir, "a.new")
	os.WriteFile(tmp, []byte("build two"), 0o755)
	if err := os.Rename(tmp, a); err != nil {
		t.Fatal(err)
	}
	if id2, _ := Of(a); id2 == id1 {
		t.Fatalf("two builds share the id %s", id1)
	}
	if _, err := Of(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file has an id")
	}
}

func TestSelfIsTheRunningFile(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if byPath, _ := Of(exe); byPath != self {
		t.Fatalf("Self %s, Of(%s) %s", self, exe, byPath)
	}
	if SelfDeleted() {
		t.Fatal("the test binary is reported deleted")
	}
}

func TestCheckStatic(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build a static binary")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644)
	static := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", static, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := CheckStatic(static); err != nil {
		t.Fatalf("static binary refused: %v", err)
	}
	// The same program built with cgo links the C library dynamically.
	dynamic := filepath.Join(dir, "dynamic")
	os.WriteFile(src, []byte("package main\n// #include <stdlib.h>\nimport \"C\"\nfunc main() { C.abs(1) }\n"), 0o644)
	cmd = exec.Command("go", "build", "-o", dynamic, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("no cgo toolchain to build a dynamic binary: %v\n%s", err, out)
	}
	if err := CheckStatic(dynamic); !errors.Is(err, ErrNotStatic) {
		t.Fatalf("dynamic binary: %v, want ErrNotStatic", err)
	}
	notELF := filepath.Join(dir, "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if err := CheckStatic(notELF); err == nil {
		t.Fatal("a script passed as a static agent")
	}
}
