// Package e2e drives the real vers CLI against real VMs, as a user would.
// Every test gets its own project directory; the whole run shares one daemon
// home (a temp dir) and the image cache.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"vers/internal/config"
	"vers/internal/poll"
)

var (
	binDir   string // vers, versd, vers-agent
	versHome string
	skipWhy  string // why VMs cannot be booted here, if they cannot
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binDir = os.Getenv("VERS_BIN")
	if binDir == "" {
		dir, err := os.MkdirTemp("", "vers-bin-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if err := buildBinaries(dir); err != nil {
			fmt.Fprintln(os.Stderr, "build:", err)
			return 1
		}
		binDir = dir
	}
	home, err := os.MkdirTemp("", "vh")
	if err != nil {
		panic(err)
	}
	versHome = home
	if os.Getenv("VERS_IMAGE_DIR") == "" {
		os.Setenv("VERS_IMAGE_DIR", "/var/lib/vers/images")
	}
	os.Setenv("VERS_HOME", versHome)
	skipWhy = canBootVMs()
	code := m.Run()
	cleanupHome(versHome)
	return code
}

// buildBinaries builds the commands into dir. The agent is built exactly as
// scripts/setup.sh builds it (static, reproducible: the same bytes from any
// clone), so that the images, whose cache key includes the agent, are shared
// between the suite, the demo and the benchmarks.
func buildBinaries(dir string) error {
	agentFlags := []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}
	for _, b := range []struct {
		name, cgo string
		flags     []string
	}{{"vers", "1", nil}, {"versd", "1", nil}, {"vers-agent", "0", agentFlags}} {
		args := append(append([]string{"build"}, b.flags...), "-o", filepath.Join(dir, b.name), "vers/cmd/"+b.name)
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", b.name, err, out)
		}
	}
	return nil
}

// canBootVMs is the one place that decides whether this host can run the
// suite, and says why not.
func canBootVMs() string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (scripts/setup.sh installs it)"
	}
	if os.Geteuid() != 0 {
		return "the end-to-end suite needs root (image builds use debootstrap)"
	}
	return ""
}

func requireVMs(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot boot VMs in CI: %s", skipWhy)
		}
		t.Skip(skipWhy)
	}
	before := vmProcesses()
	t.Cleanup(func() { checkNoLeftVMs(t, before) })
}

// vmProcesses are the QEMU and passt processes on the host, by pid, with
// their command lines.
func vmProcesses() map[int]string {
	found := map[int]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if name := filepath.Base(args[0]); strings.HasPrefix(name, "qemu-system") || name == "passt" {
			found[pid] = strings.Join(args, " ")
		}
	}
	return found
}

// checkNoLeftVMs fails a test that leaves a QEMU or passt process running
// that was not there when it began (the suite runs one test at a time, so
// each one it finds is this test's), and ends them: a VM left in the
// shared daemon slows every test after it.
func checkNoLeftVMs(t *testing.T, before map[int]string) {
	t.Helper()
	var left map[int]string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
		left = map[int]string{}
		for pid, cmd := range vmProcesses() {
			if _, ok := before[pid]; !ok {
				left[pid] = cmd
			}
		}
		return len(left) == 0, nil
	})
	for pid, cmd := range left {
		t.Errorf("the test left a process running (pid %d): %.300s", pid, cmd)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// cleanupHome stops the test daemon and every VM it left.
func cleanupHome(home string) {
	if b, err := os.ReadFile(filepath.Join(home, "versd.pid")); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	entries, _ := filepath.Glob(filepath.Join(home, "vms", "*", "qemu.pid"))
	holders, _ := filepath.Glob(filepath.Join(home, "snapshots", "*", "h", "qemu.pid"))
	// A VM's passt ends with its QEMU; one left by a start that failed half
	// way does not.
	passts, _ := filepath.Glob(filepath.Join(home, "vms", "*", "passt.pid"))
	// A VM restored in place runs in a directory of its own inside the VM's.
	restored, _ := filepath.Glob(filepath.Join(home, "vms", "*", "r*", "qemu.pid"))
	entries = append(append(append(entries, holders...), passts...), restored...)
	for _, p := range entries {
		if b, err := os.ReadFile(p); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// The RAM of this home's VMs and snapshots lives outside it.
	snaps, _ := filepath.Glob(filepath.Join(home, "snapshots", "*"))
	for _, s := range snaps {
		os.Remove(filepath.Join(hostRAMDir(), "snap-"+filepath.Base(s)+".ram"))
	}
	vms, _ := filepath.Glob(filepath.Join(home, "vms", "*"))
	for _, v := range vms {
		if hostHasIOGroups() {
			// Its block I/O group empties a moment after its QEMU exits.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
				err := os.Remove(ioGroupDir(filepath.Base(v)))
				return err == nil || errors.Is(err, os.ErrNotExist), nil
			})
			cancel()
		}
		os.Remove(filepath.Join(hostRAMDir(), filepath.Base(v)+".ram"))
		gens, _ := filepath.Glob(filepath.Join(hostRAMDir(), filepath.Base(v)+".r*.ram"))
		for _, g := range gens {
			os.Remove(g)
		}
	}
	os.RemoveAll(home)
}

// shortHome is a private daemon home for one test, short enough for the
// unix socket paths under it; its daemon and VMs are stopped at the end.
func shortHome(t *testing.T) string {
	t.Helper()
	home, err := os.MkdirTemp("", "vh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupHome(home) })
	return home
}

// result of one CLI run.
type result struct {
	out, err string
	code     int
	dur      time.Duration
}

// project is a directory a test runs vers in.
type project struct {
	t   *testing.T
	dir string
	env []string
}

func newProject(t *testing.T) *project {
	t.Helper()
	return &project{t: t, dir: t.TempDir()}
}

// vers runs the CLI in the project directory with stdin empty.
func (p *project) vers(args ...string) result {
	p.t.Helper()
	return p.versIn("", args...)
}

// versIn runs the CLI with the given standard input.
func (p *project) versIn(stdin string, args ...string) result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vers"), args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{out: out.String(), err: errb.String(), dur: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("vers %v: %v", args, err)
	}
	if !(len(args) == 3 && args[0] == "status") { // polled; too noisy to log
		p.t.Logf("vers %s -> %d (%.2fs)", strings.Join(args, " "), r.code, r.dur.Seconds())
	}
	return r
}

// must runs vers and fails the test unless it exits 0.
func (p *project) must(args ...string) string {
	p.t.Helper()
	r := p.vers(args...)
	if r.code != 0 {
		p.t.Fatalf("vers %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// expect runs vers and checks its exit code and that stderr mentions want.
func (p *project) expect(code int, want string, args ...string) result {
	p.t.Helper()
	r := p.vers(args...)
	if r.code != code {
		p.t.Fatalf("vers %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	if want != "" && !strings.Contains(r.err, want) {
		p.t.Fatalf("vers %s: stderr %q does not mention %q", strings.Join(args, " "), r.err, want)
	}
	return r
}

// writeConfig writes a vers.toml.
func (p *project) writeConfig(mem, vcpu, fs int) {
	p.t.Helper()
	cfg := fmt.Sprintf("[machine]\nmem_size_mib = %d\nvcpu_count = %d\nfs_size_vm_mib = %d\n\n[rootfs]\nname = \"default\"\n\n[kernel]\nname = \"default.bin\"\n", mem, vcpu, fs)
	if err := os.WriteFile(filepath.Join(p.dir, "vers.toml"), []byte(cfg), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

type statusVM struct {
	ID       string `json:"id"`
	Alias    string `json:"alias"`
	State    string `json:"state"`
	ParentID string `json:"parent_id"`
	PID      int    `json:"pid"`
	Head     bool   `json:"head"`
}

func (p *project) status() []statusVM {
	p.t.Helper()
	var vms []statusVM
	if err := json.Unmarshal([]byte(p.must("status", "--format", "json")), &vms); err != nil {
		p.t.Fatalf("status json: %v", err)
	}
	return vms
}

func (p *project) find(alias string) (statusVM, bool) {
	for _, v := range p.status() {
		if v.Alias == alias {
			return v, true
		}
	}
	return statusVM{}, false
}

// uniqueAlias makes aliases unique across tests sharing one daemon.
func uniqueAlias(t *testing.T, base string) string {
	return fmt.Sprintf("%s-%d", base, time.Now().UnixNano()%1_000_000)
}

// qemuRunning reports whether a QEMU process for the VM id is alive.
func qemuRunning(id string) bool {
	out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+id).Output()
	return len(bytes.TrimSpace(out)) > 0
}

func daemonPID(t *testing.T) int {
	t.Helper()
	return homeDaemonPID(t, versHome)
}

func homeDaemonPID(t *testing.T, home string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "versd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// ramDir and ramPoolDir are where the daemons started from this
// environment keep guest RAM (internal/config).
func hostRAMDir() string { c, _ := config.ForDaemon(os.Getenv); return c.RAMDir }

func hostRAMPoolDir() string { c, _ := config.ForDaemon(os.Getenv); return c.RAMPoolDir }
