package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// These tests start real daemons but boot no VM: each has its own
// VERS_HOME, RAM directory (so no RAM filesystem is mounted) and image
// directory (so no shared image is pruned).

// daemonEnv is the environment of a daemon-only test in home.
func daemonEnv(t *testing.T, home string) []string {
	t.Helper()
	ram, err := os.MkdirTemp("/dev/shm", "vers-test-") // guest RAM must be on a tmpfs
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ram) })
	return []string{"VERS_HOME=" + home, "VERS_RAM_DIR=" + ram, "VERS_IMAGE_DIR=" + t.TempDir()}
}

// versAt runs the vers in bin with env and returns its result.
func versAt(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "vers"), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{out: out.String(), err: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vers %v: %v", args, err)
	}
	return r
}

// TestVersdParallelStart: commands started together with no daemon
// running all succeed, and one daemon serves them.
func TestVersdParallelStart(t *testing.T) {
	home := shortHome(t)
	env := daemonEnv(t, home)
	const n = 6
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = versAt(t, binDir, env, "status", "--format", "json")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 || strings.TrimSpace(r.out) != "[]" {
			t.Errorf("vers status #%d: exit %d, out %q, err %q", i, r.code, r.out, r.err)
		}
	}
	pid := homeDaemonPID(t, home)
	if !alive(pid) {
		t.Fatalf("versd %d from the pidfile is not running", pid)
	}
	if r := versAt(t, binDir, env, "status"); r.code != 0 {
		t.Fatalf("status after: %d %s", r.code, r.err)
	}
	if homeDaemonPID(t, home) != pid {
		t.Fatal("the daemon changed between two commands of one build")
	}
}

// TestVersdHomeMode: versd leaves the mode of the VERS_HOME it was given
// alone and makes what it creates in it private.
func TestVersdHomeMode(t *testing.T) {
	home := shortHome(t)
	if err := os.Chmod(home, os.ModePerm|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if r := versAt(t, binDir, daemonEnv(t, home), "status"); r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.err)
	}
	st, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode() & (os.ModePerm | os.ModeSticky); got != os.ModePerm|os.ModeSticky {
		t.Fatalf("VERS_HOME is %v, was drwxrwxrwt", st.Mode())
	}
	for name, want := range map[string]os.FileMode{
		"versd.sock": 0o600, "vers.db": 0o600, "versd.pid": 0o600, "versd.log": 0o600, "vms": 0o700,
		"versd.start.lock": 0o600,
	} {
		st, err := os.Stat(filepath.Join(home, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	// SQLite's side files take the database's mode.
	for _, side := range []string{"vers.db-wal", "vers.db-shm"} {
		if st, err := os.Stat(filepath.Join(home, side)); err == nil && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v", side, st.Mode().Perm())
		}
	}
}

// TestVersdRefusesDynamicAgent: a versd whose agent is not static refuses
// to start, and the command that started it says why and how to build it.
func TestVersdRefusesDynamicAgent(t *testing.T) {
	dynamic, err := exec.LookPath("true") // a dynamically linked system binary
	if err != nil {
		t.Skip("no true(1)")
	}
	home := shortHome(t)
	env := append(daemonEnv(t, home), "VERS_AGENT="+dynamic)
	r := versAt(t, binDir, env, "status")
	if r.code != 1 || !strings.Contains(r.err, "not statically linked") || !strings.Contains(r.err, "CGO_ENABLED=0 go build") {
		t.Fatalf("exit %d, stderr %q", r.code, r.err)
	}
	if _, err := os.Stat(filepath.Join(home, "versd.sock")); err == nil {
		t.Fatal("a refused versd left a socket")
	}
}

// TestVersdRestartsOtherBuild: a command of a new build replaces a daemon
// of the old one, once, even when several run at once.
func TestVersdRestartsOtherBuild(t *testing.T) {
	home := shortHome(t)
	env := daemonEnv(t, home)
	if r := versAt(t, binDir, env, "status"); r.code != 0 {
		t.Fatalf("status: %d %s", r.code, r.err)
	}
	old := homeDaemonPID(t, home)

	// Another build: the same programs in new files.
	newBin := t.TempDir()
	for _, name := range []string{"vers", "versd", "vers-agent"} {
		copyFile(t, filepath.Join(binDir, name), filepath.Join(newBin, name))
	}
	results := make([]result, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = versAt(t, newBin, env, "status")
		}()
	}
	wg.Wait()
	restarts := 0
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("new build's status #%d: exit %d: %s", i, r.code, r.err)
		}
		if strings.Contains(r.err, "restarting it") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("%d commands restarted the daemon, want 1", restarts)
	}
	pid := homeDaemonPID(t, home)
	if pid == old {
		t.Fatal("the old build's daemon still runs")
	}
	if alive(old) {
		t.Fatalf("old versd %d is still alive", old)
	}
	exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if exe != filepath.Join(newBin, "versd") {
		t.Fatalf("the daemon runs %s, want the new build", exe)
	}
	// The old build's CLI now restarts it back, since it is the other build to it.
	if r := versAt(t, binDir, env, "status"); r.code != 0 || !strings.Contains(r.err, "restarting it") {
		t.Fatalf("old build's status: %d %s", r.code, r.err)
	}
}

// alive reports whether pid runs (a zombie, exited but not yet reaped by
// whoever inherited it, does not).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
