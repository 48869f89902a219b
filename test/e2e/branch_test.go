package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vers/internal/rampool"
)

type branchOut struct {
	Parent     statusVM   `json:"parent"`
	Children   []statusVM `json:"children"`
	SnapshotID string     `json:"snapshot_id"`
	PauseMS    float64    `json:"pause_ms"`
	FirstReady int64      `json:"first_ready_ms"`
}

func (p *project) branch(args ...string) branchOut {
	p.t.Helper()
	var b branchOut
	out := p.must(append(append([]string{"branch"}, args...), "--format", "json")...)
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		p.t.Fatalf("branch json %q: %v", out, err)
	}
	p.t.Logf("branch %v: pause %.1f ms, first child ready %d ms", args, b.PauseMS, b.FirstReady)
	return b
}

func (p *project) counter(vm string) int {
	p.t.Helper()
	out := p.must("execute", vm, "cat /tmp/counter")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		p.t.Fatalf("counter of %s: %q", vm, out)
	}
	return n
}

// counterNow is counter for polling: -1 while there is none yet.
func (p *project) counterNow(vm string) int {
	p.t.Helper()
	r := p.vers("execute", vm, "cat /tmp/counter 2>/dev/null")
	n, err := strconv.Atoi(strings.TrimSpace(r.out))
	if r.code != 0 || err != nil {
		return -1
	}
	return n
}

// usage is what a VM tree costs the host: bytes of the files in the RAM dir
// and in the daemon home's VM and snapshot directories (the directories
// themselves do not count: the daemon makes them on first use).
func usage(t *testing.T, home, ramDir string) (ram, disk int64) {
	t.Helper()
	du := func(dir string) int64 {
		var n int64
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		return n
	}
	return du(ramDir), du(filepath.Join(home, "vms")) + du(filepath.Join(home, "snapshots"))
}

// poolBytes is the host memory behind the default RAM directory's files
// (internal/rampool), each shared block once; false without such a pool.
func poolBytes() (int64, bool) { return rampool.ImageBytes(hostRAMPoolDir()) }

// TestBranch: children start from the parent's exact state — a counter held
// in a process' memory goes on from the same value in parent and children —
// and diverge afterwards; HEAD moves only with -c; the tree shows them.
func TestBranch(t *testing.T) {
	requireVMs(t)
	testBranch(t, newProject(t), versHome, hostRAMDir())
}

// TestBranchCopy is TestBranch where RAM cannot be cloned (a plain directory
// of its own): branches copy RAM into a holder instead.
func TestBranchCopy(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	p := newProject(t)
	ram := plainRAMDir(t)
	p.env = []string{"VERS_HOME=" + home, "VERS_RAM_DIR=" + ram}
	testBranch(t, p, home, ram)
	if log, _ := os.ReadFile(filepath.Join(home, "versd.log")); !strings.Contains(string(log), "copy (background snapshot)") {
		t.Fatal("the daemon did not branch by copying")
	}
}

// ioGroupRoot is where VMs' block I/O groups live: the cgroup v1 blkio
// hierarchy here ("" if the host has none: then the checks are skipped).
func ioGroupRoot() string {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[2] == "cgroup" && strings.Contains(","+f[3]+",", ",blkio,") {
			return filepath.Join(f[1], "vers")
		}
	}
	return ""
}

func hostHasIOGroups() bool { return ioGroupRoot() != "" }

func ioGroupDir(id string) string { return filepath.Join(ioGroupRoot(), id) }

// inGroup reports whether process pid is in the block I/O group named id.
func inGroup(pid int, id string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && strings.Contains(string(b), ":/vers/"+id+"\n")
}

// ramFiles lists the files in the default RAM directory.
func ramFiles() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(hostRAMDir())
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// plainRAMDir is a RAM directory of the test's own on a tmpfs, which cannot
// clone files; it does not exist yet, as on a fresh machine.
func plainRAMDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "vers-test-")
	if err != nil {
		t.Skip("no tmpfs at /dev/shm")
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ram")
}

func testBranch(t *testing.T, p *project, home, ramDir string) {
	p.must("init")
	root := uniqueAlias(t, "broot")
	ram0, disk0 := usage(t, home, ramDir)
	pool0, pooled := poolBytes()
	p.must("run", "--vm-alias", root)
	// The counter lives in the shell's memory; the file only shows it.
	p.must("execute", "nohup bash -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done' >/dev/null 2>&1 &")
	waitFor(t, "the counter to start", 10*time.Second, func() bool { return p.counterNow(root) > 5 })

	before := p.counter(root)
	b := p.branch("--alias", root+"-a")
	if len(b.Children) != 1 || b.Children[0].Alias != root+"-a" || b.Parent.Alias != root {
		t.Fatalf("branch result %+v", b)
	}
	kid := b.Children[0].Alias
	// Each VM's QEMU has a block I/O group of its own, where the host has
	// the controller (internal/cgroup).
	groups := hostHasIOGroups()
	if groups {
		for _, v := range []statusVM{b.Parent, b.Children[0]} {
			if v, _ := p.find(v.Alias); !inGroup(v.PID, v.ID) {
				t.Fatalf("VM %s (pid %d) is not in a block I/O group of its own", v.Alias, v.PID)
			}
		}
	}
	if b.PauseMS <= 0 || b.PauseMS > 5000 {
		t.Fatalf("pause %.1f ms", b.PauseMS)
	}
	// HEAD stayed on the parent.
	if v, _ := p.find(root); !v.Head {
		t.Fatal("HEAD moved without -c")
	}
	kc, pc := p.counter(kid), p.counter(root)
	if kc < before || pc < before {
		t.Fatalf("counter went back: before branch %d, parent %d, child %d", before, pc, kc)
	}
	if kc > pc+200 {
		t.Fatalf("child counter %d is not from the parent's state (parent %d)", kc, pc)
	}
	waitFor(t, "the child's counter to go on", 10*time.Second, func() bool { return p.counter(kid) > kc })
	waitFor(t, "the parent's counter to go on", 10*time.Second, func() bool { return p.counter(root) > pc })

	// Divergence: what one writes after the branch, the other does not see.
	p.must("execute", root, "echo parent-only > /root/after")
	p.must("execute", kid, "echo child-only > /root/after-child")
	if r := p.vers("execute", kid, "test -e /root/after"); r.code != 1 {
		t.Fatalf("child sees the parent's later file (exit %d)", r.code)
	}
	if r := p.vers("execute", root, "test -e /root/after-child"); r.code != 1 {
		t.Fatalf("parent sees the child's file (exit %d)", r.code)
	}

	// -c moves HEAD to the child; a grandchild comes from the child.
	g := p.branch("-c", "--alias", kid+"-g")
	if len(g.Children) != 1 || g.Parent.Alias != root {
		t.Fatalf("-c branched %+v (HEAD was the root)", g)
	}
	if v, _ := p.find(kid + "-g"); !v.Head {
		t.Fatal("-c did not move HEAD")
	}
	gg := p.branch(kid, "--alias", kid+"-gg")
	if gg.Parent.Alias != kid || gg.Children[0].ParentID != b.Children[0].ID {
		t.Fatalf("grandchild %+v", gg)
	}
	if out := p.must("execute", kid+"-gg", "cat /root/after-child"); strings.TrimSpace(out) != "child-only" {
		t.Fatalf("grandchild lacks its parent's file: %q", out)
	}

	// The tree.
	text := p.must("status")
	for _, want := range []string{root, "├─ " + kid, "└─ " + kid + "-gg", kid + "-g"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status tree lacks %q:\n%s", want, text)
		}
	}
	for _, v := range p.status() {
		if v.Alias == kid+"-gg" && v.ParentID != b.Children[0].ID {
			t.Fatalf("json parent_id of the grandchild = %q", v.ParentID)
		}
	}

	// Kill refuses a parent, names its children, and -r frees everything.
	r := p.expect(4, "-r", "kill", root)
	if !strings.Contains(r.err, kid) {
		t.Fatalf("kill refusal does not name the children: %q", r.err)
	}
	p.must("kill", kid+"-g") // a leaf
	if out := p.must("execute", kid+"-gg", "echo alive"); strings.TrimSpace(out) != "alive" {
		t.Fatal("killing a sibling disturbed a VM")
	}
	p.must("kill", root, "-r")
	if vms := p.status(); len(vms) != 0 {
		for _, v := range vms {
			if strings.HasPrefix(v.Alias, root) {
				t.Fatalf("left after kill -r: %+v", v)
			}
		}
	}
	if groups {
		for _, x := range []branchOut{b, g, gg} {
			for _, v := range append([]statusVM{x.Parent}, x.Children...) {
				if _, err := os.Stat(ioGroupDir(v.ID)); err == nil {
					t.Fatalf("kill -r left the block I/O group of %s", v.ID)
				}
			}
		}
	}
	// The tree's own RAM files (each VM's, each snapshot's) are gone. The RAM
	// directory is shared with every other VM on the host, so its total
	// is compared only where it is the test's own.
	var treeFiles []string
	for _, x := range []branchOut{b, g, gg} {
		treeFiles = append(treeFiles, "snap-"+x.SnapshotID+".ram", x.Parent.ID+".ram")
		for _, c := range x.Children {
			treeFiles = append(treeFiles, c.ID+".ram")
		}
	}
	for _, f := range treeFiles {
		if _, err := os.Stat(filepath.Join(ramDir, f)); err == nil {
			t.Fatalf("kill -r left the RAM file %s", f)
		}
	}
	ram1, disk1 := usage(t, home, ramDir)
	if disk1 > disk0+64<<10 || (ramDir != hostRAMDir() && ram1 > ram0) {
		t.Fatalf("kill -r did not free the tree: RAM dir %d -> %d bytes, VM and snapshot dirs %d -> %d", ram0, ram1, disk0, disk1)
	}
	if pooled && ramDir == hostRAMDir() {
		// The host memory behind the RAM files: the filesystem gives freed
		// blocks back in the background; its log and metadata, and other
		// VMs' pages written back meanwhile, may add a few MiB.
		var pool1 int64
		for i := 0; i < 150; i++ {
			if pool1, _ = poolBytes(); pool1 <= pool0+64<<20 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("kill -r did not give the RAM back: the RAM filesystem held %d MiB before, %d MiB after", pool0>>20, pool1>>20)
	}
}

// TestBranchConsistency: an SQLite database being written during the branch
// is intact in parent and children; three siblings and a grandchild run
// commands at once; siblings draw different random numbers.
func TestBranchConsistency(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root := uniqueAlias(t, "cons")
	p.must("run", "--vm-alias", root)
	defer p.vers("kill", root, "-r")
	p.must("execute", `mkdir -p /app && sqlite3 /app/w.db 'CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT)' || exit 1
		nohup bash -c 'i=0; while :; do i=$((i+1)); sqlite3 /app/w.db "INSERT INTO t(v) VALUES (hex(randomblob(512)))"; done' >/dev/null 2>&1 &`)
	waitFor(t, "writes to start", 60*time.Second, func() bool {
		out := p.must("execute", "sqlite3 -cmd '.timeout 5000' /app/w.db 'SELECT count(*) FROM t'")
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n > 20
	})
	b := p.branch("--alias", root+"-s", "--count", "3")
	if len(b.Children) != 3 {
		t.Fatalf("--count 3 made %d children", len(b.Children))
	}
	for i, c := range b.Children {
		if want := fmt.Sprintf("%s-s-%d", root, i+1); c.Alias != want {
			t.Fatalf("child %d alias %q, want %q", i, c.Alias, want)
		}
	}
	g := p.branch(b.Children[0].Alias, "--alias", root+"-g")
	vms := []string{root, b.Children[0].Alias, b.Children[1].Alias, b.Children[2].Alias, g.Children[0].Alias}

	// Stop the writers, then check every copy of the database.
	var wg sync.WaitGroup
	results := make([]string, len(vms))
	rnd := make([]string, len(vms))
	began, ended := make([]time.Time, len(vms)), make([]time.Time, len(vms))
	for i, vm := range vms {
		wg.Add(1)
		go func(i int, vm string) {
			defer wg.Done()
			began[i] = time.Now()
			r := p.vers("execute", vm, "pkill -f 'INS[E]RT INTO' ; sleep 0.3; sqlite3 -cmd '.timeout 5000' /app/w.db 'PRAGMA integrity_check' && sqlite3 -cmd '.timeout 5000' /app/w.db 'SELECT count(*) > 0 FROM t'; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' >&2; sleep 2")
			ended[i] = time.Now()
			results[i] = r.out
			rnd[i] = r.err
		}(i, vm)
	}
	wg.Wait()
	// They ran at once: every command began before any had ended (each
	// lasts over 2 s; one after the other they could not overlap).
	if last, first := slices.MaxFunc(began, time.Time.Compare), slices.MinFunc(ended, time.Time.Compare); !last.Before(first) {
		t.Errorf("the five commands did not run at once: the last began %s after the first ended", last.Sub(first))
	}
	for i, vm := range vms {
		if strings.TrimSpace(results[i]) != "ok\n1" && strings.Join(strings.Fields(results[i]), " ") != "ok 1" {
			t.Errorf("%s: integrity %q", vm, results[i])
		}
	}
	seen := map[string]string{}
	for i, vm := range vms {
		if len(rnd[i]) != 32 {
			t.Fatalf("%s: random bytes %q", vm, rnd[i])
		}
		if other, dup := seen[rnd[i]]; dup {
			t.Fatalf("%s and %s read the same /dev/urandom bytes %s", vm, other, rnd[i])
		}
		seen[rnd[i]] = vm
	}
	// Clocks are the host's.
	for _, vm := range vms[1:] {
		out := p.must("execute", vm, "date +%s")
		guest, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if d := time.Now().Unix() - guest; d > 5 || d < -5 {
			t.Errorf("%s clock is %d s off the host's", vm, d)
		}
	}
	// Outbound networking works in a child: the host resolver and the Debian mirror are reachable.
	if r := p.vers("execute", vms[3], "getent hosts deb.debian.org"); r.code != 0 {
		t.Errorf("child cannot resolve names: %s", r.err)
	}
}

// TestBranchFailures: a branch that fails at any step leaves the parent
// running as it was, no half child, no leaked file. Each failure point runs
// against its own daemon that has it armed.
func TestBranchFailures(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	p.expect(3, "no VM", "branch", "nope")
	p.expect(5, "HEAD is not set", "branch")
	p.expect(5, "count", "branch", "x", "--count", "0")

	for _, point := range []string{"branch.before-freeze", "branch.in-pause", "branch.after-freeze", "branch.child-start"} {
		t.Run(point, func(t *testing.T) {
			home := shortHome(t)
			q := newProject(t)
			q.env = []string{"VERS_HOME=" + home, "VERS_FAILPOINTS=" + point}
			q.must("init")
			q.must("run", "--vm-alias", "fp")
			q.must("execute", "echo state > /root/s; nohup bash -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done' >/dev/null 2>&1 &")
			ram0 := ramFiles()
			snaps0, _ := filepath.Glob(filepath.Join(home, "snapshots", "*"))
			r := q.vers("branch", "--alias", "fp-child")
			if r.code == 0 || !strings.Contains(r.err, "injected failure") {
				t.Fatalf("branch with %s armed: exit %d, %q", point, r.code, r.err)
			}
			vms := q.status()
			if len(vms) != 1 || vms[0].Alias != "fp" || vms[0].State != "running" {
				t.Fatalf("after the failed branch: %+v", vms)
			}
			waitFor(t, "the counter", 10*time.Second, func() bool { return q.counterNow("fp") > 0 })
			c1 := q.counter("fp")
			waitFor(t, "the parent to run on", 10*time.Second, func() bool { return q.counter("fp") > c1 })
			if out := q.must("execute", "cat /root/s; echo more >> /root/s; tail -1 /root/s"); out != "state\nmore\n" {
				t.Fatalf("parent's disk after the failed branch: %q", out)
			}
			dirs, _ := filepath.Glob(filepath.Join(home, "vms", "*"))
			if len(dirs) != 1 {
				t.Fatalf("VM dirs after the failed branch: %v", dirs)
			}
			if out, _ := exec.Command("pgrep", "-fc", "qemu-system.*"+home).Output(); strings.TrimSpace(string(out)) != "1" {
				t.Fatalf("%s QEMU processes for one VM", strings.TrimSpace(string(out)))
			}
			// The frozen RAM and the child's are freed; a layer the parent's
			// disk now rests on may stay.
			for f := range ramFiles() {
				if !ram0[f] {
					t.Fatalf("the failed branch left %s in the RAM directory", f)
				}
			}
			snaps1, _ := filepath.Glob(filepath.Join(home, "snapshots", "*"))
			if point == "branch.before-freeze" || point == "branch.in-pause" {
				if len(snaps1) != len(snaps0) {
					t.Fatalf("snapshot dirs %v after a failure before the freeze", snaps1)
				}
			}
			q.must("kill", "fp")
			if left, _ := filepath.Glob(filepath.Join(home, "snapshots", "*")); len(left) != 0 {
				t.Fatalf("snapshots left after killing the VM: %v", left)
			}
			if ents, _ := os.ReadDir(hostRAMDir()); len(ents) > 0 {
				for _, e := range ents {
					t.Logf("RAM dir holds %s (may belong to another test)", e.Name())
				}
			}
		})
	}
}

// TestBranchDaemonCrash: versd dies in the middle of a branch, right after
// the parent's disk moved onto the snapshot's layer. The next command starts
// a daemon that finds the parent running and usable, removes the half-made
// child and the snapshot holder, and can branch the parent again.
func TestBranchDaemonCrash(t *testing.T) {
	requireVMs(t)
	for _, point := range []string{"branch.crash-in-pause", "branch.crash-after-freeze"} {
		t.Run("clone/"+point, func(t *testing.T) { testBranchDaemonCrash(t, point, false) })
		t.Run("copy/"+point, func(t *testing.T) { testBranchDaemonCrash(t, point, true) })
	}
}

// testBranchDaemonCrash kills the daemon at point: in the parent's pause
// (the parent is left stopped, its disk already moved) or right after it.
func testBranchDaemonCrash(t *testing.T, point string, copyRAM bool) {
	home := shortHome(t)
	q := newProject(t)
	// The default RAM directory, or one of its own where RAM is copied.
	ram := "VERS_RAM_POOL=on"
	if copyRAM {
		ram = "VERS_RAM_DIR=" + plainRAMDir(t)
	}
	q.env = []string{"VERS_HOME=" + home, ram}
	q.must("init")
	q.must("run", "--vm-alias", "cr")
	q.must("execute", "echo before > /root/f")

	// Restart the daemon with the failure point armed.
	pid := homeDaemonPID(t, home)
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, "versd to stop", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	q.env = []string{"VERS_HOME=" + home, ram, "VERS_FAILPOINTS=" + point}
	if r := q.vers("branch", "--alias", "cr-kid"); r.code == 0 {
		t.Fatal("branch succeeded although the daemon crashed")
	}
	q.env = []string{"VERS_HOME=" + home, ram}
	vms := q.status()
	if len(vms) != 1 || vms[0].Alias != "cr" || vms[0].State != "running" {
		t.Fatalf("after the crash: %+v", vms)
	}
	if out := q.must("execute", "cat /root/f; echo after >> /root/f; sync; tail -1 /root/f"); out != "before\nafter\n" {
		t.Fatalf("parent after the crash: %q", out)
	}
	if out, _ := exec.Command("pgrep", "-fc", "qemu-system.*"+home).Output(); strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("%s QEMU processes after recovery, want the parent's only", strings.TrimSpace(string(out)))
	}
	b := q.branch("--alias", "cr-kid")
	if out := q.must("execute", b.Children[0].Alias, "cat /root/f"); out != "before\nafter\n" {
		t.Fatalf("child after recovery: %q", out)
	}
	q.must("kill", "cr", "-r")
	if left, _ := filepath.Glob(filepath.Join(home, "snapshots", "*")); len(left) != 0 {
		t.Fatalf("snapshots left: %v", left)
	}
}
