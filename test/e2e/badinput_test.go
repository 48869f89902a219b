package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every mistake gets a clear message, its stable exit code,
// and leaves nothing behind.
func TestBadInput(t *testing.T) {
	requireVMs(t)

	// No vers.toml.
	empty := newProject(t)
	empty.expect(3, "vers init", "run")

	p := newProject(t)
	p.must("init")
	before := countVMDirs(t)

	// execute and connect exit 255 for vers's own failures (their other
	// codes are the remote command's), with the kind first.
	p.expect(255, `no VM is named "no-such-vm"`, "execute", "no-such-vm", "true")
	p.expect(255, "vers: not_found:", "execute", "no-such-vm", "--", "true")
	p.expect(3, "no VM", "kill", "no-such-vm")
	p.expect(3, "no VM", "checkout", "no-such-vm")
	p.expect(255, "vers: invalid: no VM named and HEAD is not set", "execute", "true")
	p.expect(255, "vers: usage:", "execute")
	p.expect(255, "vers: invalid: -e \"NOEQUALS\": write it KEY=VALUE", "execute", "-e", "NOEQUALS", "true")
	p.expect(255, "less than a millisecond", "execute", "--timeout", "1ns", "true")
	p.expect(2, "", "kill")
	p.expect(2, "alias, id or a unique id prefix", "kill", "")
	p.expect(2, "write VM:/path/in/vm", "cp", "vers.toml", ":")
	p.expect(2, "--format", "status", "--format", "yaml")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mem-size-mib", "0"}, "mem_size_mib"},
		{[]string{"--mem-size-mib", "-1"}, "mem_size_mib"},
		{[]string{"--mem-size-mib", "100000000"}, "more than this host has"},
		{[]string{"--vcpu-count", "0"}, "vcpu_count"},
		{[]string{"--vcpu-count", "-3"}, "vcpu_count"},
		{[]string{"--vcpu-count", "4096"}, "more than this host has"},
		{[]string{"--fs-size-vm-mib", "0"}, "fs_size_vm_mib"},
		{[]string{"--fs-size-vm-mib", "-1"}, "fs_size_vm_mib"},
		{[]string{"--fs-size-vm-mib", "16"}, "smaller than"},
		{[]string{"--fs-size-vm-mib", "999999999999"}, "free disk space"},
		{[]string{"--rootfs", "no-such-image"}, "unknown image"},
		{[]string{"--vm-alias", "bad alias!"}, "alias"},
	} {
		// Refused before any image is built or a boot announced.
		if r := p.expect(5, tc.want, append([]string{"run"}, tc.args...)...); strings.Contains(r.err, "Booting") {
			t.Fatalf("run %v announced a boot before refusing: %s", tc.args, r.err)
		}
	}
	// Settings in vers.toml are checked the same way as flags.
	p.writeConfig(0, 1, 1024)
	p.expect(5, "mem_size_mib", "run")
	os.WriteFile(filepath.Join(p.dir, "vers.toml"), []byte("[machine]\nmem_size_mb = 512\n"), 0o644)
	p.expect(5, "unknown setting", "run")
	p.writeConfig(512, 1, 1024)

	// Duplicate alias.
	alias := uniqueAlias(t, "dup")
	p.must("run", "--vm-alias", alias)
	p.expect(4, "already used", "run", "--vm-alias", alias)
	if n := countVMDirs(t); n != before+1 {
		t.Fatalf("%d VM directories after one good and many bad runs, want %d", n, before+1)
	}

	// A command that runs too long is killed and reported.
	r := p.expect(255, "vers: timeout: command timed out", "execute", "--timeout", "1s", "sleep 30; echo never")
	if strings.Contains(r.out, "never") || r.dur.Seconds() > 10 {
		t.Fatalf("timeout: out %q after %s", r.out, r.dur)
	}
	p.must("kill", alias)
}

// TestFailedRunLeavesNothing: a VM that fails after QEMU started is rolled
// back whole, and a missing QEMU is reported — each against its own daemon.
func TestFailedRunLeavesNothing(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home, "VERS_BOOT_TIMEOUT=300ms"}
	p.must("init")
	r := p.expect(6, "agent", "run", "--vm-alias", "never-ready")
	_ = r
	if vms := p.status(); len(vms) != 0 {
		t.Fatalf("a failed run left %+v", vms)
	}
	if dirs, _ := filepath.Glob(filepath.Join(home, "vms", "*")); len(dirs) != 0 {
		t.Fatalf("a failed run left %v", dirs)
	}
	if out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+home).Output(); len(out) != 0 {
		t.Fatalf("a failed run left QEMU running: %s", out)
	}

	home2 := shortHome(t)
	q := newProject(t)
	q.env = []string{"VERS_HOME=" + home2, "VERS_QEMU=/nonexistent/qemu-system-x86_64"}
	q.must("init")
	q.expect(1, "qemu-system-x86", "run")
	if vms := q.status(); len(vms) != 0 {
		t.Fatalf("run without QEMU left %+v", vms)
	}

	// QEMU dies while the guest boots: the run ends at once, not after the
	// boot timeout, says why, keeps the console, and leaves nothing.
	home3 := shortHome(t)
	r3 := newProject(t)
	r3.env = []string{"VERS_HOME=" + home3, "VERS_BOOT_TIMEOUT=5m"}
	r3.must("init")
	go func() {
		for i := 0; i < 600; i++ {
			logs, _ := filepath.Glob(filepath.Join(home3, "vms", "*", "serial.log"))
			if st, err := os.Stat(strings.Join(logs, "")); len(logs) == 1 && err == nil && st.Size() > 0 {
				exec.Command("pkill", "-KILL", "-f", "qemu-system.*"+home3).Run()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	res := r3.expect(1, "QEMU exited", "run", "--vm-alias", "dies")
	if res.dur > time.Minute {
		t.Fatalf("a run whose QEMU died took %s to fail", res.dur)
	}
	if !strings.Contains(res.err, "console") {
		t.Fatalf("the error does not point at the console log: %s", res.err)
	}
	if vms := r3.status(); len(vms) != 0 {
		t.Fatalf("a run whose QEMU died left %+v", vms)
	}
	if dirs, _ := filepath.Glob(filepath.Join(home3, "vms", "*")); len(dirs) != 0 {
		t.Fatalf("a run whose QEMU died left %v", dirs)
	}
}

func countVMDirs(t *testing.T) int {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(versHome, "vms", "*"))
	return len(dirs)
}
