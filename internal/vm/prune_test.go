package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestHostFilesInUse(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.img")
	named := filepath.Join(dir, "vmlinux")
	idle := filepath.Join(dir, "idle.img")
	for _, p := range []string{open, named, idle} {
		os.WriteFile(p, []byte("x"), 0o644)
	}
	f, err := os.Open(open)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A process naming a file inside an option value, as QEMU's -kernel or
	// file.filename= do.
	cmd := exec.Command("sh", "-c", "sleep 30; true", "opt=x,file="+named)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	used := hostFilesInUse()
	if !used[open] {
		t.Error("an open file is not in use")
	}
	if !used[named] {
		t.Error("a file on a command line is not in use")
	}
	if used[idle] {
		t.Error("an idle file is in use")
	}
}
