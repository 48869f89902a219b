package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vers/api"
)

// TestImageBuild: `vers image build` has versd build the image and shows
// the build's progress; Ctrl-C ends it and versd keeps nothing of it; two
// commands that build the same image share one build; `vers image ls`
// lists through the daemon. It builds only the kernel (seconds, no
// mounts), into an image directory of its own.
func TestImageBuild(t *testing.T) {
	requireVMs(t)
	home := shortHome(t)
	dir := t.TempDir()
	env := append(daemonEnv(t, home), "VERS_IMAGE_DIR="+dir)
	builds := func(sub string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, sub, "default.bin-*"))
		return m
	}

	// Ctrl-C half way: exit 7, and the daemon's build, which nobody waits
	// for any more, is cancelled and leaves nothing.
	cmd := exec.Command(filepath.Join(binDir, "vers"), "image", "build", "default.bin")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "[default.bin] step 2/4:") {
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	for sc.Scan() {
		seen = append(seen, sc.Text())
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("interrupted build: %v, want exit 7; stderr:\n%s", err, strings.Join(seen, "\n"))
	}
	if last := seen[len(seen)-1]; last != "vers: image default.bin: build interrupted; versd keeps nothing of it unless another client still waits for it" {
		t.Fatalf("interrupted build: stderr ends %q", last)
	}
	waitFor(t, "versd to clean up the cancelled build", 30*time.Second, func() bool {
		return len(builds("tmp")) == 0 && len(builds("builds")) == 0
	})
	if _, err := os.Lstat(filepath.Join(dir, "default.bin")); !os.IsNotExist(err) {
		t.Fatalf("the cancelled build installed default.bin: %v", err)
	}

	// Two at once, forced: one build, whose progress both show.
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = versAt(t, binDir, env, "image", "build", "--force", "default.bin")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 || !strings.HasPrefix(r.out, "default.bin: kernel image ready (") {
			t.Fatalf("build #%d: exit %d, out %q, err %q", i, r.code, r.out, r.err)
		}
		for _, want := range []string{"[default.bin] step 1/4:", "[default.bin] step 4/4: done", "[default.bin] built in"} {
			if !strings.Contains(r.err, want) {
				t.Errorf("build #%d: stderr does not show %q:\n%s", i, want, r.err)
			}
		}
	}
	if b := builds("builds"); len(b) != 1 {
		t.Fatalf("builds %v, want the one both shared", b)
	}

	// Built: answered at once, with no progress.
	if r := versAt(t, binDir, env, "image", "build", "default.bin"); r.code != 0 || strings.Contains(r.err, "step") {
		t.Fatalf("cached build: exit %d, stderr %q", r.code, r.err)
	}

	r := versAt(t, binDir, env, "image", "ls", "--format", "json")
	var list []api.Image
	if r.code != 0 || json.Unmarshal([]byte(r.out), &list) != nil {
		t.Fatalf("image ls: exit %d, out %q, err %q", r.code, r.out, r.err)
	}
	got := map[string]api.Image{}
	for _, img := range list {
		got[img.Name] = img
	}
	if k := got["default.bin"]; k.Kind != "kernel" || k.Status != api.ImageBuilt || k.SizeMiB == 0 || k.Built.IsZero() {
		t.Errorf("default.bin: %+v", k)
	}
	if fs := got["default"]; fs.Kind != "rootfs" || fs.Status != api.ImageMissing {
		t.Errorf("default: %+v", fs)
	}
	if r := versAt(t, binDir, env, "image", "build", "no-such"); r.code != 5 || !strings.Contains(r.err, "unknown image") {
		t.Errorf("unknown image: exit %d, stderr %q", r.code, r.err)
	}
}
