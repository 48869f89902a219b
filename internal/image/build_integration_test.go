package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBuildReal builds both images from Debian packages. It downloads about
// 100 MB, needs root and debootstrap, and takes about a minute, so it runs
// only with VERS_IMAGE_TEST=1. VERS_IMAGE_TEST_DIR keeps the images (and
// makes a second run a warm one); VERS_TEST_AGENT picks the agent binary.
func TestBuildReal(t *testing.T) {
	if os.Getenv("VERS_IMAGE_TEST") != "1" {
		t.Skip("set VERS_IMAGE_TEST=1 to build real images (downloads ~100 MB, needs root)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building a root filesystem needs root (debootstrap, device nodes)")
	}
	for _, tool := range []string{"debootstrap", "apt-get", "dpkg-deb", "mkfs.ext4", "debugfs", "xz"} {
		if _, err := lookTool(tool, ""); err != nil {
			t.Skipf("host tool %s missing", tool)
		}
	}
	dir := os.Getenv("VERS_IMAGE_TEST_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	agent := testAgent(t)
	s := New(dir, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	for _, name := range s.Names() {
		start := time.Now()
		info, err := s.Ensure(ctx, name, testLog{t})
		if err != nil {
			t.Fatalf("ensure %s: %v", name, err)
		}
		t.Logf("%s: %s in %s: %+v", name, info.Kind, time.Since(start).Round(time.Millisecond), info)
		got, err := s.Get(name)
		if err != nil || got != info {
			t.Fatalf("Get(%s) = %+v, %v; want %+v", name, got, err, info)
		}
	}

	k, _ := s.Get("default.bin")
	f, err := os.Open(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := PVHEntry(f)
	f.Close()
	if err != nil {
		t.Fatalf("vmlinux: %v", err)
	}
	t.Logf("PVH entry %#x, kernel %s", entry, k.KernelVersion)
	list := cpioList(t, k.Initrd)
	for _, want := range []string{"init", "dev/console", "lib/modules/load-order",
		"lib/modules/virtio_mmio.ko", "lib/modules/virtio_blk.ko", "lib/modules/ext4.ko",
		"lib/modules/jbd2.ko", "lib/modules/virtio_net.ko", "lib/modules/virtio_console.ko",
		"lib/modules/virtio_rng.ko", "lib/modules/crc32c_generic.ko"} {
		if !list[want] {
			t.Errorf("initramfs lacks %s", want)
		}
	}

	r, _ := s.Get("default")
	if r.SizeMiB > maxRootfsMiB || r.SizeMiB < 64 {
		t.Errorf("rootfs size %d MiB", r.SizeMiB)
	}
	usrBin := debugfs(t, r.Path, "ls -l /usr/bin")
	usrSbin := debugfs(t, r.Path, "ls -l /usr/sbin")
	for _, want := range []string{"sqlite3", "bash", "apt-get"} {
		if !strings.Contains(usrBin, " "+want+"\n") && !strings.Contains(usrBin, " "+want+" ") {
			t.Errorf("rootfs /usr/bin lacks %s", want)
		}
	}
	if !strings.Contains(usrSbin, "vers-agent") {
		t.Errorf("rootfs /usr/sbin lacks vers-agent:\n%s", usrSbin)
	}
	if got := debugfs(t, r.Path, "stat /usr/sbin/init"); !strings.Contains(got, "vers-agent") {
		t.Errorf("/sbin/init is not a link to vers-agent:\n%s", got)
	}
	if got := debugfs(t, r.Path, "cat /etc/resolv.conf"); got != "nameserver 10.0.2.3\n" {
		t.Errorf("resolv.conf = %q", got)
	}

	// Warm: everything current, nothing rebuilt.
	start := time.Now()
	for _, name := range s.Names() {
		if _, err := s.Ensure(ctx, name, testLog{t}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("warm Ensure of both: %s", time.Since(start))

	// A new agent makes both stale; the rootfs rebuild reuses debootstrap.
	agent2 := filepath.Join(t.TempDir(), "agent")
	data, _ := os.ReadFile(agent)
	os.WriteFile(agent2, append(data, 0), 0o755)
	s2 := New(dir, agent2)
	if _, err := s2.Get("default"); err == nil {
		t.Fatal("rootfs not stale after the agent changed")
	}
	for _, name := range []string{"default", "default.bin"} {
		start = time.Now()
		if _, err := s2.Build(ctx, name, false, testLog{t}); err != nil {
			t.Fatal(err)
		}
		t.Logf("rebuild of %s after an agent change: %s", name, time.Since(start).Round(time.Millisecond))
	}
	if _, err := os.Stat(r.Path); err != nil {
		t.Errorf("old build removed while VMs may use it: %v", err)
	}
}

// testAgent returns a static binary to embed: VERS_TEST_AGENT, the real
// agent if it builds, or busybox as a stand-in.
func testAgent(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VERS_TEST_AGENT"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "vers-agent")
	_, file, _, _ := runtime.Caller(0)
	cmdDir := filepath.Join(filepath.Dir(file), "..", "..", "cmd", "vers-agent")
	if m, _ := filepath.Glob(filepath.Join(cmdDir, "*.go")); len(m) > 0 {
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = cmdDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err == nil {
			return out
		}
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no agent binary: set VERS_TEST_AGENT")
	return ""
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	bin, err := lookTool("debugfs", "e2fsprogs")
	if err != nil {
		t.Skip(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-R", req, img)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs %s: %v", req, err)
	}
	return out.String()
}

func cpioList(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := readCPIO(data)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range ents {
		m[e.name] = true
	}
	return m
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestInterruptRealDebootstrap cancels a real debootstrap half way and
// checks that its processes, mounts and files are all gone.
func TestInterruptRealDebootstrap(t *testing.T) {
	if os.Getenv("VERS_IMAGE_TEST") != "1" {
		t.Skip("set VERS_IMAGE_TEST=1 to run debootstrap (downloads, needs root)")
	}
	if os.Geteuid() != 0 {
		t.Skip("debootstrap needs root")
	}
	if _, err := lookTool("debootstrap", ""); err != nil {
		t.Skip("debootstrap missing")
	}
	dir := t.TempDir()
	s := New(dir, testAgent(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	progress := &syncBuffer{}
	go func() {
		_, err := s.Build(ctx, "default", false, progress)
		done <- err
	}()
	// Cancel once debootstrap is unpacking, when it has mounts in the target.
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(progress.String(), "unpacking") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cancel()
	start := time.Now()
	err := <-done
	t.Logf("cancelled build returned in %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if m, _ := mountsUnder(dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 0 {
		t.Errorf("tmp not empty: %v", ents)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "cache", "*")); len(m) != 0 {
		t.Errorf("half debootstrap cached: %v", m)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(dir)) {
			t.Errorf("process still running: %s", bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
