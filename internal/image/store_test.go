package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testStore returns a store with one extra recipe "fake" whose steps are
// given, plus the path of its agent binary.
func testStore(t *testing.T, steps ...step) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent-bin")
	if err := os.WriteFile(agent, []byte("agent v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(filepath.Join(dir, "images"), agent)
	s.add(&recipe{name: "fake", kind: KindRootfs, spec: "fake recipe v1\n", steps: steps})
	return s, agent
}

// writeImage is a step that produces a small image file.
var writeImage = step{"write image", time.Millisecond, func(ctx context.Context, b *build) error {
	b.meta.Path = "disk.img"
	b.meta.SizeMiB = 1
	return os.WriteFile(filepath.Join(b.out, "disk.img"), []byte("image"), 0o644)
}}

func TestBuildGetList(t *testing.T) {
	var runs atomic.Int32
	count := step{"count", 0, func(context.Context, *build) error { runs.Add(1); return nil }}
	s, agent := testStore(t, writeImage, count)
	ctx := context.Background()

	if _, err := s.Get("nope"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "default.bin, default") {
		t.Fatalf("Get(nope) = %v; want ErrUnknown listing the names", err)
	}
	if _, err := s.Get("fake"); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Get before build = %v; want ErrNotBuilt", err)
	}
	var progress bytes.Buffer
	info, err := s.Ensure(ctx, "fake", &progress)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "[fake] step 1/2: write image") || !strings.Contains(progress.String(), "[fake] built in") {
		t.Errorf("progress:\n%s", progress.String())
	}
	if b, err := os.ReadFile(info.Path); err != nil || string(b) != "image" {
		t.Fatalf("image at %s: %q, %v", info.Path, b, err)
	}
	if info.Name != "fake" || info.Kind != KindRootfs || info.SizeMiB != 1 || len(info.Recipe) != 32 || info.Built.IsZero() {
		t.Errorf("info = %+v", info)
	}
	if got, err := s.Get("fake"); err != nil || got != info {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, info)
	}
	// Current: Ensure and Build without force do nothing.
	s.Ensure(ctx, "fake", nil)
	s.Build(ctx, "fake", false, nil)
	if runs.Load() != 1 {
		t.Fatalf("steps ran %d times, want 1", runs.Load())
	}
	// Forced: a new build directory, the old one stays for its users.
	forced, err := s.Build(ctx, "fake", true, nil)
	if err != nil || forced.Path == info.Path || runs.Load() != 2 {
		t.Fatalf("forced build = %+v, %v (runs %d)", forced, err, runs.Load())
	}
	if _, err := os.Stat(info.Path); err != nil {
		t.Errorf("old build removed: %v", err)
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]State{}
	for _, st := range list {
		states[st.Name] = st.State
	}
	if states["fake"] != StateBuilt || states["default"] != StateMissing || states["default.bin"] != StateMissing {
		t.Fatalf("states = %v", states)
	}

	// A new agent binary makes the build stale.
	time.Sleep(10 * time.Millisecond) // a distinct mtime
	os.WriteFile(agent, []byte("agent v2"), 0o755)
	if _, err := s.Get("fake"); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("Get after agent change = %v; want stale ErrNotBuilt", err)
	}
	list, _ = s.List()
	for _, st := range list {
		if st.Name == "fake" && (st.State != StateStale || st.Info.Path != forced.Path) {
			t.Fatalf("status after agent change = %+v", st)
		}
	}
	again, err := s.Ensure(ctx, "fake", nil)
	if err != nil || again.Recipe == forced.Recipe || runs.Load() != 3 {
		t.Fatalf("rebuild = %+v, %v (runs %d)", again, err, runs.Load())
	}
}

func TestRecipeHash(t *testing.T) {
	base := recipeHash("spec", "agent1")
	if base != recipeHash("spec", "agent1") {
		t.Fatal("hash not deterministic")
	}
	if base == recipeHash("spec", "agent2") || base == recipeHash("spec2", "agent1") {
		t.Fatal("hash ignores the agent or the spec")
	}
	// The real recipes: distinct, and the rootfs spec covers the files it writes.
	s := New(t.TempDir(), "/nonexistent")
	k, r := s.recipes["default.bin"], s.recipes["default"]
	if k.spec == r.spec {
		t.Fatal("kernel and rootfs specs are equal")
	}
	for _, want := range []string{"nameserver 10.0.2.3", "sqlite3", "debian-security", "lazy_itable_init=0"} {
		if !strings.Contains(r.spec, want) {
			t.Errorf("rootfs spec lacks %q", want)
		}
	}
	for _, want := range []string{"virtio_mmio", "ext4", "linux-image-amd64"} {
		if !strings.Contains(k.spec, want) {
			t.Errorf("kernel spec lacks %q", want)
		}
	}
	if _, err := s.Get("default"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get with a missing agent = %v; want ErrInvalid", err)
	}
}

// TestInterruptedBuild cancels a build in the middle of a step and checks
// that nothing of it remains and the next build works.
func TestInterruptedBuild(t *testing.T) {
	started := make(chan struct{})
	var tmpSeen string
	block := step{"wait for cancel", time.Hour, func(ctx context.Context, b *build) error {
		tmpSeen = b.tmp
		os.WriteFile(filepath.Join(b.tmp, "partial"), []byte("half"), 0o644)
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	s, _ := testStore(t, writeImage, block)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Build(ctx, "fake", false, nil)
		errc <- err
	}()
	<-started
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if _, err := s.Get("fake"); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Get after interrupt = %v; want ErrNotBuilt", err)
	}
	if _, err := os.Stat(tmpSeen); !os.IsNotExist(err) {
		t.Errorf("temp dir %s left behind: %v", tmpSeen, err)
	}
	if m, _ := filepath.Glob(filepath.Join(s.dir, "builds", "fake-*")); len(m) != 0 {
		t.Errorf("builds left: %v", m)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, "fake")); !os.IsNotExist(err) {
		t.Errorf("image link exists after interrupt: %v", err)
	}

	// A killed process cannot clean up: its temp dir is removed by the next
	// build, which also gets the lock (flock dies with its holder).
	stale := filepath.Join(s.dir, "tmp", "fake-123456")
	os.MkdirAll(filepath.Join(stale, "out"), 0o755)
	other := filepath.Join(s.dir, "tmp", "fake.other-1")
	os.MkdirAll(other, 0o755)
	s.recipes["fake"].steps = []step{writeImage}
	if _, err := s.Build(context.Background(), "fake", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp dir survived: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another image's temp dir was removed: %v", err)
	}
}

// TestConcurrentBuilds: two builds of one image at once run the steps once;
// the second waits for the lock and then finds the image current.
func TestConcurrentBuilds(t *testing.T) {
	var runs atomic.Int32
	slow := step{"slow", 0, func(ctx context.Context, b *build) error {
		runs.Add(1)
		time.Sleep(300 * time.Millisecond)
		return nil
	}}
	s, _ := testStore(t, writeImage, slow)
	var wg sync.WaitGroup
	infos := make([]Info, 2)
	errs := make([]error, 2)
	var progress [2]bytes.Buffer
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = s.Build(context.Background(), "fake", false, &progress[i])
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if runs.Load() != 1 || infos[0] != infos[1] {
		t.Fatalf("runs = %d, infos %+v", runs.Load(), infos)
	}
	if !strings.Contains(progress[0].String()+progress[1].String(), "waiting for another build") {
		t.Error("the waiting build did not say so")
	}
}

func TestFailedStepPointsAtLog(t *testing.T) {
	fail := step{"fail", 0, func(ctx context.Context, b *build) error {
		return b.run(ctx, nil, "sh", "dash", "-c", "echo first line; echo the real reason >&2; exit 3")
	}}
	s, _ := testStore(t, fail)
	_, err := s.Build(context.Background(), "fake", false, nil)
	if err == nil || !strings.Contains(err.Error(), "the real reason") || !strings.Contains(err.Error(), filepath.Join(s.dir, "logs", "fake.log")) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Get("fake"); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Get after failure = %v", err)
	}
}

func TestMissingToolsCheckedFirst(t *testing.T) {
	ran := false
	s, _ := testStore(t, step{"never", 0, func(context.Context, *build) error { ran = true; return nil }})
	s.recipes["fake"].tools = [][2]string{{"sh", "dash"}, {"vers-no-such-tool", "vers-pkg"}, {"vers-no-such-tool2", "vers-pkg"}}
	_, err := s.Build(context.Background(), "fake", false, nil)
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "needs vers-no-such-tool, vers-no-such-tool2; install with: apt-get install vers-pkg") || ran {
		t.Fatalf("err = %v, ran = %v", err, ran)
	}
}

func TestMissingTool(t *testing.T) {
	_, err := lookTool("vers-no-such-tool", "vers-pkg")
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "apt-get install vers-pkg") {
		t.Fatalf("err = %v", err)
	}
}

func TestDeepestFirst(t *testing.T) {
	in := []string{"/img/t/base/proc", "/img/t/base/dev/null", "/img/t/base", "/img/t/with space", "/img/t/base/proc"}
	got := deepestFirst(in)
	want := "/img/t/base/dev/null|/img/t/base/proc|/img/t/base/proc|/img/t/with space|/img/t/base"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %q\nwant %q", strings.Join(got, "|"), want)
	}
	if in[0] != "/img/t/base/proc" {
		t.Fatal("deepestFirst changed its argument")
	}
}

func TestMountsUnderFindsAMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "a b")
	os.MkdirAll(sub, 0o755)
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Skip(err)
	}
	defer syscall.Unmount(sub, syscall.MNT_DETACH)
	got, err := mountsUnder(dir)
	if err != nil || len(got) != 1 || got[0] != sub {
		t.Fatalf("mounts under %s: %q %v", dir, got, err)
	}
}

func TestRootfsSizeMiB(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		used int64
		want int
	}{
		{0, 64},
		{100 * mib, 176},
		{188 * mib, 272},
		{420 * mib, 512}, // capped: still fits without the free headroom
		{480 * mib, 552}, // the tree itself needs more: not capped
	} {
		if got := rootfsSizeMiB(tt.used); got != tt.want {
			t.Errorf("rootfsSizeMiB(%d MiB) = %d, want %d", tt.used/mib, got, tt.want)
		}
	}
}

func TestPrune(t *testing.T) {
	s, _ := testStore(t, writeImage)
	ctx := context.Background()
	var paths []string
	for range 3 {
		info, err := s.Build(ctx, "fake", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, info.Path)
	}
	if _, err := s.Prune(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Prune(nil) = %v", err)
	}
	removed, err := s.Prune(ctx, func(p string) bool { return p == paths[0] })
	if err != nil || len(removed) != 1 || removed[0] != filepath.Dir(paths[1]) {
		t.Fatalf("Prune = %v, %v; want only %s", removed, err, filepath.Dir(paths[1]))
	}
	for _, p := range []string{paths[0], paths[2]} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	removed, _ = s.Prune(ctx, func(string) bool { return false })
	if len(removed) != 1 {
		t.Fatalf("second Prune removed %v", removed)
	}
	if info, err := s.Get("fake"); err != nil || info.Path != paths[2] {
		t.Fatalf("current build lost: %+v, %v", info, err)
	}
}
