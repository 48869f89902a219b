package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vers/internal/hostmem"
)

// The defects of a sound core, each shown on real VMs through the CLI.

// TestHungVM: a VM whose QEMU stops answering (kill -STOP) blocks nothing
// else. Its branch fails within seconds saying so, other VMs are run,
// branched and killed meanwhile, status reports it, and it can be killed.
func TestHungVM(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	hung, other, third := uniqueAlias(t, "hung"), uniqueAlias(t, "other"), uniqueAlias(t, "third")
	p.must("run", "--vm-alias", hung)
	p.must("run", "--vm-alias", other)
	v, _ := p.find(hung)
	if err := syscall.Kill(v.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(v.PID, syscall.SIGCONT)

	var wg sync.WaitGroup
	var hb result
	wg.Add(1)
	go func() { defer wg.Done(); hb = p.vers("branch", hung) }()
	ob := p.vers("branch", other, "--alias", other+"-kid")
	tr := p.vers("run", "--vm-alias", third)
	wg.Wait()
	if tr.code == 0 {
		defer p.vers("kill", third)
	}
	if ob.code != 0 || tr.code != 0 {
		t.Fatalf("another VM could not be branched (%d: %s) or run (%d: %s) while one hangs", ob.code, ob.err, tr.code, tr.err)
	}
	if hb.code == 0 || !strings.Contains(hb.err, "not answering") || hb.dur > 20*time.Second {
		t.Fatalf("branch of a stopped VM: exit %d after %s: %s", hb.code, hb.dur, hb.err)
	}
	r := p.vers("execute", hung, "true")
	if r.code == 0 || r.dur > 10*time.Second {
		t.Fatalf("execute in a stopped VM: exit %d after %s", r.code, r.dur)
	}
	if s, _ := p.find(hung); s.State != "unresponsive" {
		t.Errorf("status shows a stopped VM as %q", s.State)
	}
	start := time.Now()
	p.must("kill", hung)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("kill of a stopped VM took %s", d)
	}
	if qemuRunning(v.ID) {
		t.Error("the stopped VM's QEMU still runs")
	}
	p.must("kill", "-r", other)
}

// TestAbandonedCommands: a client that goes away takes its guest process
// with it — a pipe closed under `vers execute`, a SIGKILLed `vers connect`.
func TestAbandonedCommands(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "gone")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	sh := exec.Command("sh", "-c", filepath.Join(binDir, "vers")+` execute 'echo $$ > /tmp/loop.pid; while true; do echo x; done' | head -3`)
	sh.Dir, sh.Env = p.dir, os.Environ()
	if out, err := sh.CombinedOutput(); err != nil || strings.Count(string(out), "x") != 3 {
		t.Fatalf("execute | head -3: %v %q", err, out)
	}
	p.waitGone(alias, "/tmp/loop.pid")

	conn := exec.Command(filepath.Join(binDir, "vers"), "connect", alias)
	conn.Dir, conn.Env = p.dir, os.Environ()
	conn.Stdin = strings.NewReader("echo $$ > /tmp/shell.pid\nsleep 1000\n")
	if err := conn.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connected shell", 30*time.Second, func() bool {
		return p.vers("execute", alias, "test -s /tmp/shell.pid").code == 0
	})
	conn.Process.Kill()
	conn.Wait()
	p.waitGone(alias, "/tmp/shell.pid")
}

// waitGone waits until the guest process whose pid is in file has gone:
// within two seconds of its client leaving.
func (p *project) waitGone(vm, file string) {
	p.t.Helper()
	check := fmt.Sprintf(`kill -0 "$(cat %s)" 2>/dev/null && echo alive || echo gone`, file)
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := p.vers("execute", vm, check)
		if strings.TrimSpace(r.out) == "gone" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the guest process of %s still runs after its client went", file)
		}
	}
}

// TestBranchWhileBusy: commands running at the branch instant belong to
// the parent's clients. In the children they are ended, and each child's
// first command works.
func TestBranchWhileBusy(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root := uniqueAlias(t, "busy")
	p.must("run", "--vm-alias", root)
	defer p.vers("kill", "-r", root)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vers"), "execute", root,
				fmt.Sprintf("for n in $(seq 600); do echo busy-%d $n; sleep 0.05; done", i))
			cmd.Dir, cmd.Env = p.dir, os.Environ()
			cmd.Run()
		}()
	}
	waitFor(t, "the commands to run", 30*time.Second, func() bool {
		r := p.vers("execute", root, "pgrep -c -f '[e]cho busy-' || true")
		n, _ := strconv.Atoi(strings.TrimSpace(r.out))
		return n >= 8
	})
	for round := range 3 {
		kid := fmt.Sprintf("%s-k%d", root, round)
		p.must("branch", root, "--alias", kid, "--count", "2")
		for _, k := range []string{kid + "-1", kid + "-2"} {
			r := p.vers("execute", k, "echo first; pgrep -c -f '[e]cho busy-' || true")
			lines := strings.Fields(r.out)
			if r.code != 0 || len(lines) != 2 || lines[0] != "first" {
				t.Fatalf("first command in %s: exit %d, %q, %s", k, r.code, r.out, r.err)
			}
			if lines[1] != "0" {
				t.Errorf("%s still runs %s of its parent's commands", k, lines[1])
			}
		}
	}
	// The parent's own commands ran on undisturbed.
	if r := p.vers("execute", root, "pgrep -c -f '[e]cho busy-' || true"); strings.TrimSpace(r.out) != "8" {
		t.Errorf("the parent runs %q of its 8 commands after the branches", strings.TrimSpace(r.out))
	}
	cancel()
	wg.Wait()
}

// TestAdmissionAndNames: a VM that fits the host alone but not beside what
// runs is refused before anything starts, saying how much is free; an alias
// that could be read as an id is refused; a killed QEMU shows dead at once.
func TestAdmissionAndNames(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	p.expect(5, "could be read as a VM id", "run", "--vm-alias", "deadbeef")

	total, err := hostmem.Total()
	if err != nil {
		t.Skip(err)
	}
	big := int(total>>20) * 2 / 3
	first := uniqueAlias(t, "big")
	p.must("run", "--vm-alias", first, "--mem-size-mib", strconv.Itoa(big))
	defer p.vers("kill", first)
	before := len(p.status())
	r := p.expect(4, "free", "run", "--vm-alias", uniqueAlias(t, "big2"), "--mem-size-mib", strconv.Itoa(big))
	if r.dur > 10*time.Second {
		t.Errorf("refusal took %s: it must come before anything starts", r.dur)
	}
	if n := len(p.status()); n != before {
		t.Errorf("%d VMs after a refusal, %d before", n, before)
	}

	v, _ := p.find(first)
	syscall.Kill(v.PID, syscall.SIGKILL)
	waitFor(t, "the QEMU to exit", 5*time.Second, func() bool { return !qemuRunning(v.ID) })
	// The daemon learns of the exit from the process itself, a moment later.
	waitFor(t, "status to show the VM dead", 5*time.Second, func() bool {
		s, _ := p.find(first)
		return s.State == "dead"
	})
}

// TestDiskFull: a full disk under VERS_HOME pauses the guest. Status says
// why, commands fail at once with the reason, and the VM runs on once there
// is room again.
func TestDiskFull(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	if err := syscall.Mount("tmpfs", home, "tmpfs", 0, "size=640m,mode=0700"); err != nil {
		t.Skipf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() {
		cleanupHome(home)
		syscall.Unmount(home, syscall.MNT_DETACH)
	})
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home}
	p.must("init")
	alias := uniqueAlias(t, "full")
	p.must("run", "--vm-alias", alias, "--fs-size-vm-mib", "400")
	// Leave 32 MiB free, then have the guest write 96.
	filler := filepath.Join(home, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(home, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-32<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p.must("execute", alias, "nohup dd if=/dev/urandom of=/root/big bs=1M count=96 conv=fsync >/root/dd.log 2>&1 &")
	waitFor(t, "the VM to pause on the full disk", 60*time.Second, func() bool {
		s, _ := p.find(alias)
		return s.State == "paused"
	})
	if r := p.vers("status", "--format", "json"); !strings.Contains(r.out, "host disk full") {
		t.Errorf("status does not say why: %s", r.out)
	}
	r := p.vers("execute", "--timeout", "5s", alias, "true")
	if r.code == 0 || !strings.Contains(r.err, "disk full") || r.dur > 3*time.Second {
		t.Fatalf("execute in a VM paused by a full disk: exit %d after %s: %s", r.code, r.dur, r.err)
	}
	os.Remove(filler)
	waitFor(t, "the VM to run again", 30*time.Second, func() bool {
		s, _ := p.find(alias)
		return s.State == "running"
	})
	p.must("execute", alias, "while pgrep -x dd >/dev/null; do sleep 0.2; done; test $(stat -c %s /root/big) -eq $((96<<20))")
	p.must("kill", alias)
}

// TestGuestReboot: a guest that reboots is booted again as the same VM,
// with what it wrote to its disk.
func TestGuestReboot(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "reboot")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)
	before, _ := p.find(alias)
	p.must("execute", alias, "echo kept > /root/kept; sync")
	p.vers("execute", "--timeout", "5s", alias, "echo b > /proc/sysrq-trigger")
	waitFor(t, "the VM to come back", 60*time.Second, func() bool {
		s, _ := p.find(alias)
		return s.State == "running" && s.PID != before.PID && s.ID == before.ID
	})
	if out := p.must("execute", alias, "cat /root/kept"); strings.TrimSpace(out) != "kept" {
		t.Fatalf("after the reboot /root/kept is %q", out)
	}
}
