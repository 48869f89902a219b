package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needQEMU skips the test unless QEMU and qemu-img can run here.
func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts QEMU; skipped with -short")
	}
	if _, err := Binary(); err != nil {
		t.Skipf("cannot start VMs: %v", err)
	}
	if _, err := ImgBinary(); err != nil {
		t.Skipf("cannot create disks: %v", err)
	}
	if _, err := PasstBinary(); err != nil {
		t.Skipf("cannot give VMs a network: %v", err)
	}
}

// testConfig is a VM that boots nothing: QEMU runs its devices and QMP
// without a kernel, which is all the driver needs to be exercised.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	return Config{
		Name:   fmt.Sprintf("t%d-%d", os.Getpid(), time.Now().UnixNano()%1e9),
		Dir:    filepath.Join(dir, "vm"),
		MemMiB: 64,
		VCPUs:  1,
		Accel:  "tcg",
	}
}

// startTest starts cfg and makes sure the test leaves no QEMU behind.
func startTest(t *testing.T, cfg Config) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inst, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { Kill(cfg) })
	return inst
}

func makeDisk(t *testing.T, path string, mib int) {
	t.Helper()
	if _, err := runImg(context.Background(), "create", "-q", "-f", "qcow2", path, strconv.Itoa(mib)+"M"); err != nil {
		t.Fatal(err)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	needQEMU(t)
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.Disk = filepath.Join(t.TempDir(), "root.qcow2")
	makeDisk(t, cfg.Disk, 64)

	t0 := time.Now()
	inst := startTest(t, cfg)
	t.Logf("Start took %v", time.Since(t0))
	pid := inst.PID()

	// QEMU must not live and die with its starter: not our child, not in our session.
	if ppid := parentPID(t, pid); ppid == os.Getpid() {
		t.Errorf("qemu pid %d is a child of the test process", pid)
	}
	mySID, _ := unix.Getsid(0)
	if sid, _ := unix.Getsid(pid); sid == mySID {
		t.Errorf("qemu pid %d shares the test process' session %d", pid, sid)
	}

	expectStatus(t, inst, "running")
	if err := inst.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, inst, "paused")
	if err := inst.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, inst, "running")

	// The root disk is the block node the branching code addresses by name.
	var nodes []struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
		Drv      string `json:"drv"`
	}
	if err := inst.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true}, &nodes); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range nodes {
		found = found || (n.NodeName == RootNode && n.Drv == "qcow2" && n.File == cfg.Disk)
	}
	if !found {
		t.Errorf("no qcow2 node %q on %s in %+v", RootNode, cfg.Disk, nodes)
	}
	// The agent port exists with the name the guest looks for.
	var chardevs []struct {
		Label    string `json:"label"`
		Filename string `json:"filename"`
	}
	if err := inst.Execute(ctx, "query-chardev", nil, &chardevs); err != nil {
		t.Fatal(err)
	}
	if !hasChardev(chardevs, "agent", cfg.AgentSocket()) {
		t.Errorf("no agent chardev on %s in %+v", cfg.AgentSocket(), chardevs)
	}
	var qe *QMPError
	if err := inst.Execute(ctx, "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command = %v, want QMPError CommandNotFound", err)
	}

	// A second Start of the same VM must not start a second QEMU.
	if _, err := Start(ctx, cfg); !errors.Is(err, ErrRunning) {
		t.Errorf("second Start = %v, want ErrRunning", err)
	}

	// Drop the connection, as a daemon that exits does; the VM runs on.
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if !Alive(pid) {
		t.Fatal("qemu died when the QMP connection was closed")
	}
	again, err := Attach(ctx, cfg)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if again.PID() != pid {
		t.Errorf("Attach found pid %d, want %d", again.PID(), pid)
	}
	expectStatus(t, again, "running")

	t0 = time.Now()
	if err := again.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(t0))
	if Alive(pid) {
		t.Errorf("qemu pid %d alive after Stop", pid)
	}
	for _, p := range []string{cfg.QMPSocket(), cfg.AgentSocket(), cfg.PIDFile()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Stop (%v)", p, err)
		}
	}
	if err := again.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	if _, err := Attach(ctx, cfg); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Attach after Stop = %v, want ErrNotRunning", err)
	}
}

func TestMemoryFile(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	cfg.MemPath = filepath.Join(t.TempDir(), "ram")
	inst := startTest(t, cfg)
	fi, err := os.Stat(cfg.MemPath)
	if err != nil {
		t.Fatalf("memory file: %v", err)
	}
	if fi.Size() != int64(cfg.MemMiB)*mib {
		t.Errorf("memory file is %d bytes, want %d", fi.Size(), int64(cfg.MemMiB)*mib)
	}
	var devs []struct {
		ID    string `json:"id"`
		Share bool   `json:"share"`
	}
	if err := inst.Execute(context.Background(), "query-memdev", nil, &devs); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].ID != "mem" || !devs[0].Share {
		t.Errorf("query-memdev = %+v, want one shared backend \"mem\"", devs)
	}
	// No huge-page advice on the RAM file (hugePagesHurt): the mapping's
	// flags lack "hg".
	if flags := mappingFlags(t, inst.PID(), cfg.MemPath); slices.Contains(flags, "hg") {
		t.Errorf("RAM file mapped with flags %v: huge pages advised", flags)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// mappingFlags is the VmFlags of process pid's mapping of path.
func mappingFlags(t *testing.T, pid int, path string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = f[5] == path
		case in && len(f) > 0 && f[0] == "VmFlags:":
			return f[1:]
		}
	}
	t.Fatalf("no mapping of %s in process %d", path, pid)
	return nil
}

func TestIncoming(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	cfg.Incoming = true
	inst := startTest(t, cfg)
	expectStatus(t, inst, "inmigrate")
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	cfg.Disk = filepath.Join(t.TempDir(), "missing.qcow2")
	_, err := Start(context.Background(), cfg)
	if err == nil {
		Kill(cfg)
		t.Fatal("Start with a missing disk succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "missing.qcow2") || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("error %q does not carry QEMU's message", err)
	}
	if pids := qemuPIDsNamed(t, cfg.Name); len(pids) > 0 {
		t.Errorf("qemu left running after failed Start: %v", pids)
	}
	for _, p := range []string{cfg.QMPSocket(), cfg.AgentSocket(), cfg.PIDFile()} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after failed Start", p)
		}
	}
}

func TestStartValidates(t *testing.T) {
	cfg := testConfig(t)
	cfg.Accel = ""
	if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Start(invalid) = %v, want ErrInvalid", err)
	}
}

func TestStartCancelled(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, cfg); !errors.Is(err, context.Canceled) {
		Kill(cfg)
		t.Fatalf("Start(cancelled) = %v, want context.Canceled", err)
	}
	if pids := qemuPIDsNamed(t, cfg.Name); len(pids) > 0 {
		t.Fatalf("qemu running after a cancelled Start: %v", pids)
	}
}

func TestAttachAfterKill9(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	pid := inst.PID()
	inst.Close()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, err := Attach(context.Background(), cfg); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Attach after kill -9 = %v, want ErrNotRunning", err)
	}
	// The pidfile QEMU could not remove is cleaned up by Kill, which is
	// content that nothing runs.
	if err := Kill(cfg); err != nil {
		t.Fatalf("Kill of a dead VM = %v", err)
	}
	if _, err := os.Stat(cfg.PIDFile()); err == nil {
		t.Error("pidfile left after Kill")
	}
	// And the VM can start again in the same directory.
	inst2 := startTest(t, cfg)
	if err := inst2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPIDReuseIsNotTheVM(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	// A live process that is not the VM's QEMU holds the PID in the pidfile.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	os.MkdirAll(cfg.Dir, 0o700)
	os.WriteFile(cfg.PIDFile(), []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600)

	if _, err := Attach(context.Background(), cfg); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Attach = %v, want ErrNotRunning", err)
	}
	if err := Kill(cfg); err != nil {
		t.Fatal(err)
	}
	if !Alive(other.Process.Pid) {
		t.Fatal("Kill signalled a process that is not the VM's QEMU")
	}
	// Another VM's QEMU is not this VM either.
	vm2 := testConfig(t)
	inst := startTest(t, vm2)
	os.WriteFile(cfg.PIDFile(), []byte(strconv.Itoa(inst.PID())), 0o600)
	if err := Kill(cfg); err != nil || !Alive(inst.PID()) {
		t.Fatalf("Kill(cfg) = %v, and killed another VM's qemu: %v", err, !Alive(inst.PID()))
	}
	inst.Stop(context.Background())
}

func TestStopAfterClose(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	pid := inst.PID()
	inst.Close()
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) {
		t.Fatal("qemu alive after Stop")
	}
	if !inst.Exited() {
		t.Fatal("Exited() = false after Stop")
	}
}

func TestKillRunning(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	if err := Kill(cfg); err != nil {
		t.Fatal(err)
	}
	if Alive(inst.PID()) || !inst.Exited() {
		t.Fatal("qemu alive after Kill")
	}
	if err := inst.Execute(context.Background(), "query-status", nil, nil); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Execute on a killed VM = %v, want ErrDisconnected", err)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Errorf("Stop of a killed VM = %v", err)
	}
}

// TestOutlivesStarter starts a VM from a separate process, then kills that
// process and its whole process group, as happens to a daemon killed with -9
// or a foreground daemon hit by Ctrl-C. The VM must keep running.
func TestOutlivesStarter(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	t.Cleanup(func() { Kill(cfg) })
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperStart$")
	helper.Env = append(os.Environ(), "VERS_QEMU_HELPER_NAME="+cfg.Name, "VERS_QEMU_HELPER_DIR="+cfg.Dir)
	helper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "started "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		helper.Process.Kill()
		helper.Wait()
		t.Fatal("helper did not start a VM")
	}
	// The helper is still running (it waits for stdin); kill its group.
	unix.Kill(-helper.Process.Pid, unix.SIGKILL)
	helper.Wait()
	time.Sleep(200 * time.Millisecond)
	if !Alive(pid) {
		t.Fatal("qemu died with the process that started it")
	}
	inst, err := Attach(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Attach after starter died: %v", err)
	}
	expectStatus(t, inst, "running")
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestHelperStart is not a test: TestOutlivesStarter runs it in a child process.
func TestHelperStart(t *testing.T) {
	name, dir := os.Getenv("VERS_QEMU_HELPER_NAME"), os.Getenv("VERS_QEMU_HELPER_DIR")
	if name == "" {
		t.Skip("helper for TestOutlivesStarter")
	}
	inst, err := Start(context.Background(), Config{Name: name, Dir: dir, MemMiB: 64, VCPUs: 1, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("started %d\n", inst.PID())
	os.Stdout.Sync()
	time.Sleep(time.Minute) // until killed
}

func TestCreateOverlay(t *testing.T) {
	needQEMU(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	makeDisk(t, base, 64)

	tests := []struct {
		name    string
		sizeMiB int
		want    int
	}{
		{"same size", 0, 64},
		{"explicit same size", 64, 64},
		{"grown", 200, 200},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".qcow2")
		if err := CreateOverlay(ctx, base, "qcow2", path, tt.sizeMiB); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := VirtualSizeMiB(ctx, path)
		if err != nil || got != tt.want {
			t.Errorf("%s: VirtualSizeMiB = %d, %v; want %d", tt.name, got, err, tt.want)
		}
		info, err := runImg(ctx, "info", "--output=json", path)
		if err != nil || !strings.Contains(string(info), `"backing-filename": "`+base+`"`) ||
			!strings.Contains(string(info), `"backing-filename-format": "qcow2"`) {
			t.Errorf("%s: overlay does not name its backing: %s %v", tt.name, info, err)
		}
	}

	small := filepath.Join(dir, "small.qcow2")
	if err := CreateOverlay(ctx, base, "qcow2", small, 32); !errors.Is(err, ErrInvalid) {
		t.Errorf("smaller overlay = %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(small); err == nil {
		t.Error("a refused overlay was created anyway")
	}
	existing := filepath.Join(dir, "same-size.qcow2")
	if err := CreateOverlay(ctx, base, "qcow2", existing, 0); !errors.Is(err, os.ErrExist) {
		t.Errorf("overlay over an existing file = %v, want ErrExist", err)
	}
	if err := CreateOverlay(ctx, filepath.Join(dir, "nope"), "qcow2", filepath.Join(dir, "x.qcow2"), 0); err == nil {
		t.Error("overlay on a missing backing succeeded")
	}

	// A raw backing works as well, and its size is read while a VM holds it.
	raw := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(raw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(raw, 10*mib+1)
	if n, err := VirtualSizeMiB(ctx, raw); err != nil || n != 11 {
		t.Errorf("VirtualSizeMiB(raw 10 MiB + 1 byte) = %d, %v; want 11 (rounded up)", n, err)
	}
	if err := CreateOverlay(ctx, raw, "raw", filepath.Join(dir, "on-raw.qcow2"), 0); err != nil {
		t.Errorf("overlay on raw: %v", err)
	}
}

func TestVirtualSizeWhileInUse(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	cfg.Disk = filepath.Join(t.TempDir(), "root.qcow2")
	makeDisk(t, cfg.Disk, 96)
	inst := startTest(t, cfg)
	defer inst.Stop(context.Background())
	if n, err := VirtualSizeMiB(context.Background(), cfg.Disk); err != nil || n != 96 {
		t.Fatalf("VirtualSizeMiB of a disk in use = %d, %v; want 96", n, err)
	}
}

func expectStatus(t *testing.T, inst *Instance, want string) {
	t.Helper()
	got, err := inst.Status(context.Background())
	if err != nil || got != want {
		t.Fatalf("Status() = %q, %v; want %q", got, err, want)
	}
}

func hasChardev(list []struct {
	Label    string `json:"label"`
	Filename string `json:"filename"`
}, label, path string) bool {
	for _, c := range list {
		if c.Label == label && strings.Contains(c.Filename, path) {
			return true
		}
	}
	return false
}

func parentPID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// qemuPIDsNamed lists live processes whose command line has -name name.
func qemuPIDsNamed(t *testing.T, name string) []int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !Alive(pid) {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(b), "\x00-name\x00"+name+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestBootKernel boots a real kernel (VERS_TEST_KERNEL: an uncompressed PVH
// vmlinux) with no root filesystem. The kernel panics, panic=-1 reboots it,
// and -no-reboot must turn that into QEMU exiting; the console must reach the
// serial log.
func TestBootKernel(t *testing.T) {
	needQEMU(t)
	kernel := os.Getenv("VERS_TEST_KERNEL")
	if kernel == "" {
		t.Skip("set VERS_TEST_KERNEL to an uncompressed PVH vmlinux to boot a real kernel")
	}
	cfg := testConfig(t)
	cfg.Kernel, cfg.MemMiB = kernel, 256
	cfg, err := cfg.WithHostDefaults()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	inst := startTest(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for !inst.Exited() {
		if time.Now().After(deadline) {
			t.Fatalf("guest still running after 60s; console:\n%s", fileTail(cfg.SerialLog(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("boot to panic and exit: %v", time.Since(t0))
	log, _ := os.ReadFile(cfg.SerialLog())
	for _, want := range []string{"Linux version", "tsc_early_khz=" + strconv.Itoa(cfg.TSCkHz), "Kernel panic"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("console lacks %q:\n%s", want, fileTail(cfg.SerialLog(), 2000))
		}
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Errorf("Stop of an exited VM: %v", err)
	}
}

// TestQEMULogAfterDaemonize: once daemonized QEMU has no stderr; what it
// says later (here: a broken incoming migration, which makes it exit) must
// still reach QEMULog.
func TestQEMULogAfterDaemonize(t *testing.T) {
	needQEMU(t)
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.Incoming = true
	inst := startTest(t, cfg)
	bad := filepath.Join(t.TempDir(), "state")
	os.WriteFile(bad, []byte("this is not a migration stream"), 0o600)
	f, err := os.Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := inst.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "in"}, f, nil); err != nil {
		t.Fatal(err)
	}
	if err := inst.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:in"}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !inst.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !inst.Exited() {
		t.Fatal("qemu still running after a broken incoming migration")
	}
	if log := fileTail(cfg.QEMULog(), 4096); !strings.Contains(log, "migration") {
		t.Fatalf("qemu log lacks the migration failure: %q", log)
	} else {
		t.Logf("qemu log: %s", log)
	}
	inst.Stop(ctx)
}

func TestBackingAndRebase(t *testing.T) {
	if _, err := ImgBinary(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	mid, top := filepath.Join(dir, "mid.qcow2"), filepath.Join(dir, "top.qcow2")
	if err := CreateOverlay(ctx, base, "raw", mid, 0); err != nil {
		t.Fatal(err)
	}
	if err := CreateOverlay(ctx, mid, "qcow2", top, 0); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][2]string{base: {"", ""}, mid: {base, "raw"}, top: {mid, "qcow2"}} {
		b, f, err := Backing(path)
		if err != nil || b != want[0] || f != want[1] {
			t.Errorf("Backing(%s) = %q, %q, %v; want %q, %q", filepath.Base(path), b, f, err, want[0], want[1])
		}
	}
	moved := filepath.Join(dir, "moved.qcow2")
	if err := os.Rename(mid, moved); err != nil {
		t.Fatal(err)
	}
	if err := Rebase(ctx, top, moved, "qcow2"); err != nil {
		t.Fatal(err)
	}
	if b, f, _ := Backing(top); b != moved || f != "qcow2" {
		t.Errorf("after rebase: %q, %q", b, f)
	}
}
