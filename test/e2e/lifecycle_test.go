package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLifecycle is the foundation workflow: init, run, execute (sqlite3
// writes a database, a second execute reads it back), connect with a script
// on stdin, status in text and JSON, kill — and then nothing of the VM remains.
func TestLifecycle(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	out := p.must("init")
	if !strings.Contains(out, "Initialized") {
		t.Fatalf("init said %q", out)
	}
	cfg, err := os.ReadFile(filepath.Join(p.dir, "vers.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[machine]", "mem_size_mib = 512", "vcpu_count = 1", "fs_size_vm_mib = 1024", "[rootfs]", `name = "default"`, "[kernel]", `name = "default.bin"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("vers.toml lacks %q:\n%s", want, cfg)
		}
	}
	if st, err := os.Stat(filepath.Join(p.dir, ".vers")); err != nil || !st.IsDir() {
		t.Fatalf(".vers/ missing: %v", err)
	}
	// A second init leaves an edited vers.toml alone.
	p.writeConfig(768, 2, 1536)
	p.must("init")
	if b, _ := os.ReadFile(filepath.Join(p.dir, "vers.toml")); !strings.Contains(string(b), "768") {
		t.Fatal("second init overwrote vers.toml")
	}

	alias := uniqueAlias(t, "life")
	out = p.must("run", "--vm-alias", alias)
	if !strings.Contains(out, alias) {
		t.Fatalf("run output %q does not name the alias", out)
	}
	v, ok := p.find(alias)
	if !ok || v.State != "running" || !v.Head {
		t.Fatalf("after run: %+v (found %v)", v, ok)
	}
	if !regexp.MustCompile(`[0-9a-f-]{36}`).MatchString(out) || !strings.Contains(out, v.ID) {
		t.Fatalf("run output %q does not print the id %s", out, v.ID)
	}
	head, _ := os.ReadFile(filepath.Join(p.dir, ".vers", "HEAD"))
	if strings.TrimSpace(string(head)) != v.ID {
		t.Fatalf("HEAD = %q, want %s", head, v.ID)
	}

	// The machine is the size vers.toml asked for.
	out = p.must("execute", "nproc; awk '/MemTotal/{print $2}' /proc/meminfo; df -m --output=size / | tail -1")
	f := strings.Fields(out)
	if len(f) != 3 {
		t.Fatalf("sizes: %q", out)
	}
	if f[0] != "2" {
		t.Errorf("nproc = %s, want 2", f[0])
	}
	if kb, _ := strconv.Atoi(f[1]); kb < 600*1024 || kb > 768*1024 {
		t.Errorf("MemTotal = %s kB, want about 768 MiB", f[1])
	}
	if mb, _ := strconv.Atoi(f[2]); mb < 1300 || mb > 1536 {
		t.Errorf("root filesystem = %s MiB, want about 1536", f[2])
	}

	p.must("execute", "mkdir -p /app/db && sqlite3 /app/db/t.db \"CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('kept');\"")
	if out := p.must("execute", alias, "sqlite3 /app/db/t.db 'SELECT x FROM t'"); strings.TrimSpace(out) != "kept" {
		t.Fatalf("read back %q", out)
	}

	// stdout and stderr apart; the exit code is the command's.
	r := p.vers("execute", "echo out; echo err >&2; exit 7")
	if r.code != 7 || strings.TrimSpace(r.out) != "out" || strings.TrimSpace(r.err) != "err" {
		t.Fatalf("execute: code %d out %q err %q", r.code, r.out, r.err)
	}

	// connect with a script on stdin runs it in a login shell.
	r = p.versIn("cd /app\nsqlite3 db/t.db \"INSERT INTO t VALUES ('from connect');\"\necho \"cwd=$(pwd) user=$(whoami)\"\nexit\n", "connect")
	if r.code != 0 || !strings.Contains(r.out, "cwd=/app user=root") {
		t.Fatalf("connect: code %d out %q err %q", r.code, r.out, r.err)
	}
	if out := p.must("execute", "sqlite3 /app/db/t.db 'SELECT count(*) FROM t'"); strings.TrimSpace(out) != "2" {
		t.Fatalf("after connect: %q", out)
	}

	text := p.must("status")
	if !strings.Contains(text, alias) || !strings.Contains(text, "running") || !strings.Contains(text, "* "+alias) {
		t.Fatalf("status text:\n%s", text)
	}

	vmDir := filepath.Join(versHome, "vms", v.ID)
	if _, err := os.Stat(filepath.Join(vmDir, "disk.qcow2")); err != nil {
		t.Fatalf("overlay missing while running: %v", err)
	}
	p.must("kill", alias)
	if qemuRunning(v.ID) {
		t.Fatal("QEMU still runs after kill")
	}
	if _, err := os.Stat(vmDir); !os.IsNotExist(err) {
		t.Fatalf("VM directory (overlay, sockets) remains after kill: %v", err)
	}
	if _, ok := p.find(alias); ok {
		t.Fatal("VM still listed after kill")
	}
	// Named with "--", the killed VM is not found; without, its name would
	// be the command (for HEAD, which the kill cleared).
	p.expect(255, "vers: not_found:", "execute", alias, "--", "true")
	p.expect(255, "no VM is named", "execute", alias, "true")
}

// TestDaemonRestart: VMs outlive versd. After kill -9 of the daemon, the next
// command starts a new one, which finds the VM running and usable; a VM
// whose QEMU died is shown dead and can be removed.
func TestDaemonRestart(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "restart")
	p.must("run", "--vm-alias", alias)
	p.must("execute", "echo before > /root/mark")
	v, _ := p.find(alias)

	old := daemonPID(t)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "versd to die", 5*time.Second, func() bool { return syscall.Kill(old, 0) != nil })
	if !qemuRunning(v.ID) {
		t.Fatal("QEMU died with the daemon")
	}
	// The first commands after a restart race to dial the VM's agent: one
	// dials, the others use its session (none waits out a timeout).
	var wg sync.WaitGroup
	outs := make([]result, 4)
	for i := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i] = p.vers("execute", "cat /root/mark") }()
	}
	wg.Wait()
	for _, r := range outs {
		if r.code != 0 || strings.TrimSpace(r.out) != "before" || r.dur > 10*time.Second {
			t.Fatalf("a first command after the restart: exit %d after %s: %q %s", r.code, r.dur, r.out, r.err)
		}
	}
	if daemonPID(t) == old {
		t.Fatal("daemon was not restarted")
	}
	w, ok := p.find(alias)
	if !ok || w.State != "running" || w.ID != v.ID {
		t.Fatalf("after restart: %+v", w)
	}

	// QEMU dies behind the daemon's back.
	if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the VM to be marked dead", 15*time.Second, func() bool {
		x, _ := p.find(alias)
		return x.State == "dead"
	})
	p.expect(255, "vers: conflict:", "execute", alias, "true")
	p.must("kill", alias)
	if _, err := os.Stat(filepath.Join(versHome, "vms", v.ID)); !os.IsNotExist(err) {
		t.Fatal("dead VM's files remain after kill")
	}
}

// TestDeletedHomeLeavesNoRAM: a home deleted while its daemon is down (killed
// from outside) would leave its VMs' RAM in the host's RAM directory, and
// their QEMU processes running, with nobody to recover them. The next daemon
// to start on the host, of any home, ends those processes and removes the
// files; another home's VM is untouched.
func TestDeletedHomeLeavesNoRAM(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home}
	p.must("init")
	alias := uniqueAlias(t, "orph")
	p.must("run", "--vm-alias", alias)
	b := p.branch(alias, "--alias", alias+"-k")
	root, kid := b.Parent.ID, b.Children[0].ID
	files := []string{root + ".ram", kid + ".ram", "snap-" + b.SnapshotID + ".ram"}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(hostRAMDir(), f)); err != nil {
			t.Fatalf("RAM file %s: %v", f, err)
		}
	}

	// A VM of a live home, which must not be touched.
	q := newProject(t)
	q.must("init")
	keep := uniqueAlias(t, "keep")
	q.must("run", "--vm-alias", keep)
	defer q.vers("kill", keep)
	kv, _ := q.find(keep)

	pid := homeDaemonPID(t, home)
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "versd to die", 5*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	if !qemuRunning(root) || !qemuRunning(kid) {
		t.Fatal("the VMs died with their daemon")
	}
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}

	// Any daemon that starts now: one of a new home.
	other := shortHome(t)
	r := newProject(t)
	r.env = []string{"VERS_HOME=" + other}
	r.must("status")
	if log, _ := os.ReadFile(filepath.Join(other, "versd.log")); !strings.Contains(string(log), "removed the RAM of a deleted home") {
		t.Fatalf("the new daemon's log says nothing of the deleted home's RAM:\n%s", log)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(hostRAMDir(), f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("RAM file %s of the deleted home is still there: %v", f, err)
		}
	}
	waitFor(t, "the deleted home's QEMU processes to end", 10*time.Second, func() bool {
		return !qemuRunning(root) && !qemuRunning(kid)
	})
	if hostHasIOGroups() {
		for _, id := range []string{root, kid} {
			if _, err := os.Stat(ioGroupDir(id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the block I/O group of %s is still there: %v", id, err)
			}
		}
		if _, err := os.Stat(ioGroupDir(kv.ID)); err != nil {
			t.Errorf("the other home's VM lost its block I/O group: %v", err)
		}
	}
	if !qemuRunning(kv.ID) {
		t.Fatal("the other home's VM was ended")
	}
	q.must("execute", keep, "true")
}
