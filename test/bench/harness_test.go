// Package bench measures vers on real VMs: boot to agent-ready, exec round
// trips, image builds, daemon memory and branching. Every benchmark measures a baseline
// in the same run and reports its figures as ratios to it, because the
// absolute numbers of a shared machine move from run to run.
//
// The benchmarks drive the real CLI and the Go client against private
// daemons (one VERS_HOME each); they must never touch the default
// installation's VMs, and they stop every VM and daemon they start.
package bench

import (
	"bytes"
	"context"
	"errors"
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

	"vers/client"
	"vers/internal/config"
	"vers/internal/image"
)

var (
	prepOnce sync.Once
	binDir   string // vers, versd, vers-agent
	imageDir string // the image cache the benchmarks boot from
	skipWhy  string // why VMs cannot be booted here, if they cannot
	tmpBins  string // binaries built by this run, removed at the end

	homesMu sync.Mutex
	homes   = map[string]bool{} // daemon homes still to clean up
)

func TestMain(m *testing.M) {
	code := m.Run()
	homesMu.Lock()
	left := make([]string, 0, len(homes))
	for h := range homes {
		left = append(left, h)
	}
	homesMu.Unlock()
	for _, h := range left {
		forceCleanup(h)
	}
	if tmpBins != "" {
		os.RemoveAll(tmpBins)
	}
	os.Exit(code)
}

// requireVMs skips b with the reason when this host cannot boot vers VMs
// from a built image cache. The first call builds the binaries if VERS_BIN
// does not name them.
func requireVMs(b *testing.B) {
	b.Helper()
	prepOnce.Do(prepare)
	if skipWhy != "" {
		if os.Getenv("CI") != "" {
			b.Fatalf("cannot run the benchmarks in CI: %s", skipWhy)
		}
		b.Skip(skipWhy)
	}
}

func prepare() {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		skipWhy = "qemu-system-x86_64 is not installed (scripts/setup.sh installs it)"
		return
	}
	if os.Geteuid() != 0 {
		skipWhy = "the benchmarks need root (vers creates VM disks and builds images as root)"
		return
	}
	imageDir = os.Getenv("VERS_IMAGE_DIR")
	if imageDir == "" {
		imageDir = "/var/lib/vers/images"
	}
	binDir = os.Getenv("VERS_BIN")
	if binDir == "" {
		dir, err := os.MkdirTemp("", "vers-bench-bin-")
		if err != nil {
			skipWhy = err.Error()
			return
		}
		tmpBins = dir
		if err := buildBinaries(dir); err != nil {
			skipWhy = "cannot build the binaries: " + err.Error()
			return
		}
		binDir = dir
	}
	for _, name := range []string{"vers", "versd", "vers-agent"} {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			skipWhy = fmt.Sprintf("%s is missing from %s (scripts/setup.sh builds it)", name, binDir)
			return
		}
	}
	// The images embed the agent: a cache built with another agent is stale
	// and `vers run` would rebuild it inside the measurement.
	st := image.New(imageDir, filepath.Join(binDir, "vers-agent"))
	for _, name := range []string{"default.bin", "default"} {
		if _, err := st.Get(name); err != nil {
			skipWhy = fmt.Sprintf("image %s in %s is not usable (%v); run `vers image build` first (scripts/bench.sh does)", name, imageDir, err)
			return
		}
	}
}

// buildBinaries builds the binaries as scripts/setup.sh does, so the agent
// is byte-identical to the one the cached images embed.
func buildBinaries(dir string) error {
	for _, b := range []struct {
		name string
		env  []string
		args []string
	}{
		{"vers", nil, nil},
		{"versd", nil, nil},
		{"vers-agent", []string{"CGO_ENABLED=0"}, []string{"-ldflags=-s -w"}},
	} {
		args := append([]string{"build", "-o", filepath.Join(dir, b.name)}, b.args...)
		cmd := exec.Command("go", append(args, "vers/cmd/"+b.name)...)
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", b.name, err, out)
		}
	}
	return nil
}

// home is one private daemon: its VERS_HOME and a project directory to run
// the CLI in.
type home struct {
	b       *testing.B
	dir     string   // VERS_HOME
	project string   // a `vers init` directory with a fixed vers.toml
	images  string   // VERS_IMAGE_DIR
	ramDir  string   // VERS_RAM_DIR, "" for the default
	extra   []string // more of the daemon's and the CLI's environment
}

// Machine size of every benchmark VM: the defaults of `vers init`, written
// out so the baseline boots exactly the same machine.
const (
	benchMemMiB = 512
	benchVCPUs  = 1
	benchFsMiB  = 1024
)

// newHome creates a private daemon home (short, for unix socket paths) and a
// project in it. The daemon starts with the first command that needs it.
// Call close when done; TestMain cleans up what a failed benchmark left.
func newHome(b *testing.B) *home {
	b.Helper()
	dir, err := os.MkdirTemp("", "vb-")
	if err != nil {
		b.Fatal(err)
	}
	homesMu.Lock()
	homes[dir] = true
	homesMu.Unlock()
	h := &home{b: b, dir: dir, project: filepath.Join(dir, "project"), images: imageDir}
	if err := os.MkdirAll(h.project, 0o755); err != nil {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf("[machine]\nmem_size_mib = %d\nvcpu_count = %d\nfs_size_vm_mib = %d\n\n[rootfs]\nname = \"default\"\n\n[kernel]\nname = \"default.bin\"\n",
		benchMemMiB, benchVCPUs, benchFsMiB)
	if err := os.WriteFile(filepath.Join(h.project, "vers.toml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	return h
}

func (h *home) env() []string {
	env := append(os.Environ(), "VERS_HOME="+h.dir, "VERS_IMAGE_DIR="+h.images)
	if h.ramDir != "" {
		env = append(env, "VERS_RAM_DIR="+h.ramDir)
	}
	return append(env, h.extra...)
}

// vers runs the CLI in the project directory and returns its stdout, how
// long it took, and an error with its stderr when it does not exit 0.
func (h *home) vers(ctx context.Context, args ...string) (string, time.Duration, error) {
	return h.versIn(ctx, "", args...)
}

// versIn is vers with stdin read from in.
func (h *home) versIn(ctx context.Context, in string, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vers"), args...)
	cmd.Dir = h.project
	cmd.Env = h.env()
	cmd.Stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return out.String(), d, fmt.Errorf("vers %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), d, nil
}

// must is vers that fails the benchmark on error.
func (h *home) must(args ...string) (string, time.Duration) {
	h.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, d, err := h.vers(ctx, args...)
	if err != nil {
		h.b.Fatal(err)
	}
	return out, d
}

// start starts the daemon (any CLI command does) and returns a client of it.
func (h *home) start() *client.Client {
	h.b.Helper()
	h.must("status")
	return client.New(filepath.Join(h.dir, "versd.sock"))
}

// daemonPID reads the daemon's pid file.
func (h *home) daemonPID() int {
	h.b.Helper()
	pid, err := readPID(filepath.Join(h.dir, "versd.pid"))
	if err != nil {
		h.b.Fatal(err)
	}
	return pid
}

// close kills every VM of the home with `vers kill`, stops its daemon and
// removes the home.
func (h *home) close() {
	h.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := client.New(filepath.Join(h.dir, "versd.sock"))
	if vms, err := c.ListVMs(ctx); err == nil {
		for _, v := range vms {
			if v.ParentID != "" {
				continue // -r on the roots takes the descendants too
			}
			if _, _, err := h.vers(ctx, "kill", "-r", v.ID); err != nil {
				h.b.Errorf("cleanup: %v", err)
			}
		}
	}
	forceCleanup(h.dir)
}

// forceCleanup stops the daemon of home by its pid file, then any QEMU it
// left behind, and removes home.
func forceCleanup(home string) {
	if pid, err := readPID(filepath.Join(home, "versd.pid")); err == nil {
		stopProcess(pid, 10*time.Second)
	}
	pidfiles, _ := filepath.Glob(filepath.Join(home, "vms", "*", "qemu.pid"))
	for _, p := range pidfiles {
		if pid, err := readPID(p); err == nil {
			stopProcess(pid, 5*time.Second)
		}
	}
	os.RemoveAll(home)
	homesMu.Lock()
	delete(homes, home)
	homesMu.Unlock()
}

// stopProcess sends SIGTERM, waits up to grace for the process to go, then
// sends SIGKILL.
func stopProcess(pid int, grace time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

var errNoPID = errors.New("no pid")

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: %w", path, errNoPID)
	}
	return pid, nil
}

// ramDir and ramPoolDir are where the daemons started from this
// environment keep guest RAM (internal/config).
func hostRAMDir() string { c, _ := config.ForDaemon(os.Getenv); return c.RAMDir }

func hostRAMPoolDir() string { c, _ := config.ForDaemon(os.Getenv); return c.RAMPoolDir }
