package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Commits through the real CLI on real VMs: a VM's whole state kept on
// disk and brought back — after its VM is gone, after the host "restarts",
// on another host — and the lifecycle built on it: sleep and wake, restore
// in place.

// counterLoop keeps a counter in a shell's memory only, and shows it in a
// file; a VM brought back from a commit goes on counting from its value
// at the commit.
const counterLoop = "nohup bash -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.05; done' >/dev/null 2>&1 &"

// sqliteWriter writes an SQLite database without pause.
const sqliteWriter = `mkdir -p /app && sqlite3 /app/w.db 'CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT)' || exit 1
	nohup bash -c 'while :; do sqlite3 /app/w.db "INSERT INTO t(v) VALUES (hex(randomblob(256)))"; done' >/dev/null 2>&1 &`

type commitJSON struct {
	Commit struct {
		ID           string   `json:"id"`
		Tags         []string `json:"tags"`
		LogicalBytes int64    `json:"logical_bytes"`
		AddedBytes   int64    `json:"added_bytes"`
	} `json:"commit"`
	PauseMillis float64 `json:"pause_ms"`
}

func (p *project) commit(args ...string) commitJSON {
	p.t.Helper()
	var c commitJSON
	out := p.must(append([]string{"commit", "--format", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		p.t.Fatalf("commit json %q: %v", out, err)
	}
	return c
}

// TestCommitRestore: a VM with a counter in memory and a database being
// written is committed and killed; run-commit brings back both — the
// counter going on from its value at the commit, the database whole.
// Then the same after a host restart (its daemon, its VMs and its RAM
// filesystem gone), and from another host (an export imported into
// another daemon's home).
func TestCommitRestore(t *testing.T) {
	requireVMs(t)
	home, ramDir := shortHome(t), privateRAM(t)
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home, "VERS_RAM_DIR=" + ramDir}
	p.must("init")
	p.must("run", "--vm-alias", "src")
	p.must("execute", counterLoop)
	p.must("execute", sqliteWriter)
	// A counter that runs, with the writer competing for the guest's one
	// vCPU: on a loaded host a few steps can take many seconds.
	waitFor(t, "the counter to start", 60*time.Second, func() bool { return p.counterNow("src") > 5 })
	before := p.counter("src")
	c := p.commit("--tag", "ready", "-m", "counter and db")
	after := p.counter("src")
	if c.Commit.ID == "" || c.PauseMillis <= 0 || c.Commit.AddedBytes == 0 {
		t.Fatalf("commit %+v", c)
	}
	p.must("kill", "src")

	check := func(q *project, ref, alias string) {
		t.Helper()
		q.must("run-commit", ref, "--vm-alias", alias)
		first := q.counter(alias)
		if first < before || first > after+100 {
			t.Errorf("%s: counter %d after the restore; it was %d..%d at the commit", alias, first, before, after)
		}
		waitFor(t, "the restored counter to go on", 60*time.Second, func() bool { return q.counter(alias) > first })
		if out := q.must("execute", alias, "pkill -f '[w]hile :; do sqlite3'; sleep 0.3; sqlite3 /app/w.db 'PRAGMA integrity_check'"); strings.TrimSpace(out) != "ok" {
			t.Errorf("%s: integrity_check %q", alias, out)
		}
		if n := strings.TrimSpace(q.must("execute", alias, "sqlite3 /app/w.db 'SELECT count(*) FROM t'")); n == "0" {
			t.Errorf("%s: the database lost its rows", alias)
		}
	}
	check(p, "ready", "back")

	// A host restart: daemon, QEMUs and guest RAM gone; commits stay.
	hostRestart(t, home, ramDir)
	vms := p.status()
	if len(vms) != 1 || vms[0].State != "dead" {
		t.Fatalf("after the restart: %+v", vms)
	}
	if r := p.vers("status"); !strings.Contains(r.out, "lost") {
		t.Errorf("status does not say the VM was lost:\n%s", r.out)
	}
	p.must("kill", "back")
	check(p, c.Commit.ID[:12], "after-restart")

	// Another host: export here, import into another home, run there.
	archive := filepath.Join(t.TempDir(), "c.tar")
	p.must("commit", "export", "ready", "-o", archive)
	q := newProject(t)
	q.env = []string{"VERS_HOME=" + shortHome(t), "VERS_RAM_DIR=" + privateRAM(t)}
	q.must("init")
	out := q.must("commit", "import", archive)
	if !strings.Contains(out, c.Commit.ID[:12]) {
		t.Errorf("import says %q", out)
	}
	check(q, c.Commit.ID, "elsewhere")
}

// privateRAM is a RAM directory of the test's own, on a tmpfs it mounts,
// so that the test can take it away as a host restart does.
func privateRAM(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "vr")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8g,mode=0700"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH); os.Remove(dir) })
	return dir
}

// hostRestart does to a daemon's home what a host restart does: versd and
// every QEMU die, and the RAM filesystem goes (unmounted and mounted again
// empty). The next command starts a new daemon.
func hostRestart(t *testing.T, home, ramDir string) {
	t.Helper()
	pid := homeDaemonPID(t, home)
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "versd to die", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	exec.Command("pkill", "-9", "-f", "qemu-system.*"+home).Run()
	waitFor(t, "the QEMUs to die", 10*time.Second, func() bool {
		out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+home).Output()
		return len(strings.TrimSpace(string(out))) == 0
	})
	if err := syscall.Unmount(ramDir, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", ramDir, "tmpfs", 0, "size=8g,mode=0700"); err != nil {
		t.Fatal(err)
	}
}

// TestSleepWakeCycles: twenty sleeps and wakes of one VM, data written
// before each sleep, all of it checked after each wake; the VM keeps its
// id, alias and HEAD, and its processes go on.
func TestSleepWakeCycles(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "sleepy")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)
	id, _ := p.find(alias)
	p.must("execute", counterLoop)
	last := 0
	for i := 1; i <= 20; i++ {
		p.must("execute", fmt.Sprintf("head -c 1048576 /dev/urandom > /root/d%d && sha256sum /root/d%d > /root/d%d.sum && sync", i, i, i))
		p.must("sleep")
		s, _ := p.find(alias)
		if s.State != "sleeping" || qemuRunning(id.ID) {
			t.Fatalf("cycle %d: state %s, qemu running %v", i, s.State, qemuRunning(id.ID))
		}
		p.expect(255, "vers wake", "execute", "true")
		p.must("wake")
		w, _ := p.find(alias)
		if w.ID != id.ID || w.State != "running" || !w.Head {
			t.Fatalf("cycle %d: woken %+v", i, w)
		}
		p.must("execute", fmt.Sprintf("for j in $(seq 1 %d); do sha256sum -c --quiet /root/d$j.sum || exit 1; done", i))
		n := p.counter(alias)
		if n <= last {
			t.Fatalf("cycle %d: counter %d, was %d: the process did not go on", i, n, last)
		}
		last = n
	}
	var commits []struct {
		ID       string `json:"id"`
		Kind     string `json:"kind"`
		SourceVM string `json:"source_vm"`
	}
	if err := json.Unmarshal([]byte(p.must("commit", "ls", "--format", "json")), &commits); err != nil {
		t.Fatal(err)
	}
	for _, c := range commits {
		if c.SourceVM == id.ID && c.Kind == "sleep" {
			t.Errorf("sleep commit %s left after the wakes", c.ID)
		}
	}
}

// TestRestoreInPlace: a VM goes back to a commit and keeps its id, alias
// and HEAD; a restore that fails (a corrupt chunk) leaves it running as it
// was. Also the commands' refusals.
func TestRestoreInPlace(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home}
	p.must("init")
	p.must("run", "--vm-alias", "rip")
	p.must("execute", "echo one > /root/f; sync")
	c := p.commit("--tag", "one")
	p.must("execute", "echo two > /root/f; sync")
	before, _ := p.find("rip")
	p.must("restore", "one")
	after, _ := p.find("rip")
	if after.ID != before.ID || !after.Head || after.PID == before.PID {
		t.Fatalf("restored %+v, was %+v", after, before)
	}
	if out := p.must("execute", "cat /root/f"); out != "one\n" {
		t.Fatalf("after the restore /root/f = %q", out)
	}
	if out, _ := exec.Command("pgrep", "-fc", "qemu-system.*"+home).Output(); strings.TrimSpace(string(out)) != "1" {
		t.Errorf("%s QEMU processes after the restore, want 1", strings.TrimSpace(string(out)))
	}

	// Bad input.
	p.expect(3, "no commit or tag", "run-commit", "nosuch")
	p.expect(3, "no commit or tag", "restore", "nosuch")
	p.expect(4, "exists already", "commit", "--tag", "one")
	p.expect(4, "exists already", "tag", "create", "one", c.Commit.ID)
	p.must("run", "--vm-alias", "nap")
	p.must("sleep", "nap")
	needed := strings.TrimSpace(p.must("commit", "ls", "-q"))
	for _, id := range strings.Fields(needed) {
		if id != c.Commit.ID[:12] && id != c.Commit.ID {
			p.expect(4, "nap", "commit", "rm", id)
		}
	}
	p.must("kill", "nap")
	p.must("checkout", "rip")

	// A corrupt chunk: the restore fails, says so, and the VM runs on.
	// (A commit restored before is on the host already and needs no chunk.)
	p.must("execute", "echo three > /root/f; sync")
	p.commit("--tag", "three")
	corruptChunks(t, home)
	p.expect(4, "corrupt", "restore", "three")
	p.expect(4, "corrupt", "run-commit", "three", "--vm-alias", "bad")
	if out := p.must("execute", "cat /root/f"); out != "three\n" {
		t.Fatalf("after a failed restore /root/f = %q", out)
	}
	if vms := p.status(); len(vms) != 1 || vms[0].State != "running" {
		t.Fatalf("after the failed restores: %+v", vms)
	}
	p.must("kill", "rip")
}

// corruptChunks flips a byte in every stored chunk bigger than 4 KiB (the
// guest RAM's among them; the manifest is small and stays readable).
func corruptChunks(t *testing.T, home string) {
	t.Helper()
	n := 0
	filepath.Walk(filepath.Join(home, "chunks"), func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || fi.Size() < 4096 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		b[len(b)/2] ^= 0xff
		os.Chmod(path, 0o600)
		if os.WriteFile(path, b, 0o600) == nil {
			n++
		}
		return nil
	})
	if n == 0 {
		t.Fatal("no chunk to corrupt")
	}
}

// TestCommitFaults: the disk fills during a commit (the VM runs on, no
// commit is left, the error says so), and the daemon dies in the middle of
// a commit, a sleep and a wake (the next daemon finds the VM asleep or
// awake, never both or neither).
func TestCommitFaults(t *testing.T) {
	requireVMs(t)
	t.Run("disk full", testCommitDiskFull)
	for _, point := range []string{"commit.crash-before-record", "sleep.crash-after-record", "wake.crash-before-record"} {
		t.Run(point, func(t *testing.T) { testCommitCrash(t, point) })
	}
}

func testCommitDiskFull(t *testing.T) {
	home := shortHome(t)
	if err := syscall.Mount("tmpfs", home, "tmpfs", 0, "size=900m,mode=0700"); err != nil {
		t.Skipf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { cleanupHome(home); syscall.Unmount(home, syscall.MNT_DETACH) })
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home}
	p.must("init")
	p.must("run", "--vm-alias", "full", "--fs-size-vm-mib", "400")
	p.must("execute", "head -c 200000000 /dev/urandom > /dev/shm/noise")
	// Leave 48 MiB: the images and the RAM take more.
	var st syscall.Statfs_t
	syscall.Statfs(home, &st)
	f, _ := os.Create(filepath.Join(home, "filler"))
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-48<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := p.expect(8, "full", "commit")
	if !strings.Contains(r.err, "nothing was committed") {
		t.Errorf("the error does not say nothing was committed: %s", r.err)
	}
	if out := p.must("commit", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("commits after a failed one: %q", out)
	}
	if n := countChunks(filepath.Join(home, "chunks")); n != 0 {
		t.Errorf("%d chunk files left by the failed commit", n)
	}
	p.must("execute", "true")
	os.Remove(filepath.Join(home, "filler"))
	p.commit()
	p.must("kill", "full")
}

// countChunks counts the chunk files of a chunk store (<dir>/ab/<hash>).
func countChunks(dir string) int {
	n := 0
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && len(filepath.Base(filepath.Dir(path))) == 2 && !strings.HasPrefix(fi.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// testCommitCrash kills versd at point and checks what the next one finds.
func testCommitCrash(t *testing.T, point string) {
	home := shortHome(t)
	p := newProject(t)
	base := []string{"VERS_HOME=" + home}
	p.env = base
	p.must("init")
	p.must("run", "--vm-alias", "cx")
	p.must("execute", "echo kept > /root/k; sync")
	if point == "wake.crash-before-record" {
		p.must("sleep")
	}
	pid := homeDaemonPID(t, home)
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, "versd to stop", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	p.env = append(base, "VERS_FAILPOINTS="+point)
	verb := map[string]string{"commit.crash-before-record": "commit", "sleep.crash-after-record": "sleep", "wake.crash-before-record": "wake"}[point]
	if r := p.vers(verb); r.code == 0 {
		t.Fatalf("%s succeeded although the daemon died", verb)
	}
	p.env = base
	vms := p.status()
	want := map[string]string{"commit": "running", "sleep": "sleeping", "wake": "sleeping"}[verb]
	if len(vms) != 1 || vms[0].State != want {
		t.Fatalf("after the crash: %+v, want %s", vms, want)
	}
	qemus, _ := exec.Command("pgrep", "-fc", "qemu-system.*"+home).Output()
	if n := strings.TrimSpace(string(qemus)); (want == "running") != (n == "1") {
		t.Fatalf("%s QEMU processes for a %s VM", n, want)
	}
	if verb == "commit" {
		if out := p.must("commit", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("a commit recorded although the daemon died before: %q", out)
		}
	}
	if want == "sleeping" {
		p.must("wake")
	}
	if out := p.must("execute", "cat /root/k"); out != "kept\n" {
		t.Fatalf("after recovery: %q", out)
	}
	p.commit()
	p.must("kill", "cx")
}
