package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vers/internal/qemu"
)

// TestCopyEdgeCases: vers cp reads files to their end whatever size the
// guest reports, fails at once on a full guest filesystem, and refuses what
// is not a regular file instead of waiting on it.
func TestCopyEdgeCases(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "cpedge")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	// /proc files say size 0 and have content.
	cpuinfo := filepath.Join(p.dir, "cpuinfo")
	p.must("cp", alias+":/proc/cpuinfo", cpuinfo)
	if b, _ := os.ReadFile(cpuinfo); !bytes.Contains(b, []byte("processor")) {
		t.Fatalf("/proc/cpuinfo came back as %q", b)
	}
	if out := p.must("cp", alias+":/proc/cpuinfo", "-"); !strings.Contains(out, "processor") {
		t.Fatalf("/proc/cpuinfo to stdout: %q", out)
	}

	// A full filesystem in the guest: no space, at once, nothing left behind.
	p.must("execute", alias, "mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs /mnt/small")
	big := filepath.Join(p.dir, "big.bin")
	if err := os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 256<<10), 0o644); err != nil { // 4 MiB
		t.Fatal(err)
	}
	r := p.expect(8, "full", "cp", big, alias+":/mnt/small/big.bin")
	if r.dur > 10*time.Second {
		t.Fatalf("a full filesystem took %v to report", r.dur)
	}
	t.Logf("full: %s", r.err)
	if out := p.must("execute", alias, "ls -A /mnt/small"); strings.TrimSpace(out) != "" {
		t.Fatalf("left in the full filesystem: %q", out)
	}
	// The VM's channel still carries files.
	p.must("cp", cpuinfo, alias+":/root/cpuinfo")

	// A named pipe would block a reader forever; a directory is no file.
	p.must("execute", alias, "mkfifo /root/pipe")
	for _, tt := range []struct{ src, want string }{
		{alias + ":/root/pipe", "named pipe"},
		{alias + ":/etc", "is a directory"},
		{alias + ":/dev/zero", "character device"},
	} {
		r := p.expect(5, tt.want, "cp", tt.src, filepath.Join(p.dir, "out"))
		if r.dur > 10*time.Second {
			t.Fatalf("cp %s took %v to refuse", tt.src, r.dur)
		}
		t.Logf("refused: %s", r.err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "out")); !os.IsNotExist(err) {
		t.Fatalf("a refused copy left a host file: %v", err)
	}
	p.expect(5, "is a directory", "cp", cpuinfo, alias+":/etc")
	p.expect(2, "names no file in the VM", "cp", cpuinfo, alias+":")
}

// TestConsoleLogCapped: a guest that writes to its serial port without end
// does not fill the host: serial.log is rotated past its cap, and stays
// below the cap plus what the guest writes between two of versd's checks.
func TestConsoleLogCapped(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "console")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)
	vm, ok := p.find(alias)
	if !ok {
		t.Fatal("the VM is not in vers status")
	}
	dir := filepath.Join(versHome, "vms", vm.ID)
	log, old := filepath.Join(dir, "serial.log"), filepath.Join(dir, "serial.log.1")

	p.must("execute", alias, "setsid sh -c 'while :; do echo 0123456789abcdef0123456789abcdef; done > /dev/ttyS0' </dev/null >/dev/null 2>&1 &")
	// versd checks every 2 s; the guest writes well under 1 MB/s on TCG. 4 MiB
	// of slack covers a 2 MB/s guest and a late check.
	const bound = qemu.ConsoleCap + 4<<20
	rotations := map[int64]bool{} // each rotation writes a new serial.log.1
	largest := int64(0)
	waitFor(t, "three rotations of serial.log", 3*time.Minute, func() bool {
		if fi, err := os.Stat(log); err == nil {
			largest = max(largest, fi.Size())
			if fi.Size() > bound {
				t.Fatalf("serial.log is %d bytes, past the cap %d and the slack", fi.Size(), qemu.ConsoleCap)
			}
		}
		if fi, err := os.Stat(old); err == nil {
			rotations[fi.ModTime().UnixNano()] = true
		}
		return len(rotations) >= 3
	})
	t.Logf("largest serial.log seen: %d bytes; rotations seen: %d", largest, len(rotations))
	if b, _ := os.ReadFile(old); !bytes.Contains(b, []byte("0123456789abcdef0123456789abcdef")) {
		t.Fatalf("serial.log.1 does not hold the guest's output (%d bytes)", len(b))
	}
}
