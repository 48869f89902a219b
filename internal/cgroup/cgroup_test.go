package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestHierarchyPrefersBlkio(t *testing.T) {
	v2 := t.TempDir()
	os.WriteFile(filepath.Join(v2, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	noIO := t.TempDir()
	os.WriteFile(filepath.Join(noIO, "cgroup.controllers"), []byte("cpu memory\n"), 0o644)

	for _, tc := range []struct {
		name   string
		mounts []mount
		dir    string
		v2     bool
		ok     bool
	}{
		{"v1 blkio", []mount{{"cgroup", "/sys/fs/cgroup/cpu", "rw,cpu"}, {"cgroup", "/sys/fs/cgroup/blkio", "rw,relatime,blkio"}, {"cgroup2", v2, "rw"}}, "/sys/fs/cgroup/blkio", false, true},
		{"v2 with io", []mount{{"cgroup2", noIO, "rw"}, {"cgroup2", v2, "rw"}}, v2, true, true},
		{"v2 without io", []mount{{"cgroup2", noIO, "rw"}}, "", false, false},
		{"none", []mount{{"tmpfs", "/sys/fs/cgroup", "rw"}}, "", false, false},
	} {
		dir, isV2, err := hierarchy(tc.mounts)
		if (err == nil) != tc.ok || dir != tc.dir || isV2 != tc.v2 {
			t.Errorf("%s: got %q v2=%v err=%v; want %q v2=%v ok=%v", tc.name, dir, isV2, err, tc.dir, tc.v2, tc.ok)
		}
	}
}

// TestPlace moves a real process into a group of its own and removes the
// group once the process is gone (root and a blkio or io hierarchy needed).
func TestPlace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := root(); err != nil {
		t.Skipf("no usable hierarchy: %v", err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	name := "test-" + strconv.Itoa(os.Getpid())
	if err := Place(name, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "/"+Group+"/"+name+"\n") {
		t.Fatalf("the process is not in its group:\n%s", b)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	g, _ := root()
	if _, err := os.Stat(filepath.Join(g, name)); !os.IsNotExist(err) {
		t.Fatalf("group left after Remove: %v", err)
	}
	if err := Remove("never-made"); err != nil {
		t.Fatalf("Remove of a group that never was: %v", err)
	}
}
