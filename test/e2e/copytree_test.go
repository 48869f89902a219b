package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"vers/api"
)

// copyTreeLarge is the size of the large file of TestCopyTree.
const copyTreeLarge = 200 << 20

// treeEntry is what vers cp -r keeps of one entry.
type treeEntry struct {
	kind  byte // f, d, l as find's %y
	mode  os.FileMode
	mtime int64 // seconds
	sum   string
	link  string
}

// hostEntries describes a host tree by relative name.
func hostEntries(t *testing.T, dir string) map[string]treeEntry {
	t.Helper()
	m := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		e := treeEntry{mode: fi.Mode().Perm(), mtime: fi.ModTime().Unix()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind, e.mode, e.mtime = 'l', 0, 0 // a link's own mode means nothing; its time is not compared
			e.link, _ = os.Readlink(p)
		case fi.IsDir():
			e.kind = 'd'
		default:
			e.kind = 'f'
			e.sum = sumFile(t, p)
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sumFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// guestEntries describes a guest tree the same way, with find and sha256sum.
func guestEntries(t *testing.T, p *project, alias, dir string) map[string]treeEntry {
	t.Helper()
	out := p.must("execute", alias, "cd "+dir+" && find . -printf '%y %m %T@ %p\\t%l\\n' && echo --- && find . -type f -exec sha256sum {} +")
	list, sums, _ := strings.Cut(out, "---\n")
	m := map[string]treeEntry{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		fields := strings.SplitN(line, " ", 4)
		name, link, _ := strings.Cut(fields[3], "\t")
		mode, _ := strconv.ParseUint(fields[1], 8, 32)
		secs, _ := strconv.ParseFloat(fields[2], 64)
		e := treeEntry{kind: fields[0][0], mode: os.FileMode(mode), mtime: int64(secs), link: link}
		if e.kind == 'l' {
			e.mode, e.mtime = 0, 0
		}
		m[filepath.Clean(name)] = e
	}
	for _, line := range strings.Split(strings.TrimSpace(sums), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		e := m[filepath.Clean(name)]
		e.sum = sum
		m[filepath.Clean(name)] = e
	}
	return m
}

func sameTree(t *testing.T, where string, got, want map[string]treeEntry) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	bad := false
	for _, n := range names {
		if got[n] != want[n] {
			t.Errorf("%s: %s is %+v, want %+v", where, n, got[n], want[n])
			bad = true
		}
	}
	if bad {
		t.FailNow()
	}
}

// TestCopyTree: vers cp -r of a tree with a large file, modes, times, an
// empty directory and links (one inside, two pointing out of the tree) into
// a VM and back. Both sides keep the links as links and never follow them.
// Then the guest turns a link the host copy holds into a directory, as a
// malicious guest could, and a second copy over the first must replace the
// link, not write through it.
func TestCopyTree(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "cptree")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	outside := filepath.Join(p.dir, "outside")
	if err := os.WriteFile(outside, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(p.dir, "tree")
	for _, d := range []string{"src/pkg", "empty"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{"build.sh": 0o755, "src/key": 0o600, "src/pkg/main.go": 0o644} {
		if err := os.WriteFile(filepath.Join(src, name), []byte("contents of "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(src, name), mode)
	}
	large, err := os.Create(filepath.Join(src, "src/large.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(large, rand.Reader, copyTreeLarge); err != nil {
		t.Fatal(err)
	}
	large.Close()
	for link, target := range map[string]string{"main": "src/pkg/main.go", "passwd": "/etc/passwd", "src/up": "../../outside"} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(src, "empty"), 0o700)
	when := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	for _, n := range []string{"build.sh", "src/key", "src/pkg/main.go", "src/large.bin", "src/pkg", "src", "empty", "."} {
		when = when.Add(time.Hour)
		if err := os.Chtimes(filepath.Join(src, n), when, when); err != nil {
			t.Fatal(err)
		}
	}
	want := hostEntries(t, src)

	// Host to VM: /root/copy does not exist, so it is the copy.
	r := p.vers("cp", "-r", "--format", "json", src, alias+":/root/copy")
	if r.code != 0 {
		t.Fatalf("cp -r to the VM: exit %d: %s", r.code, r.err)
	}
	var res api.CopyTreeResult
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if res.Path != "/root/copy" || res.Files != 4 || res.Dirs != 4 || res.Symlinks != 3 || res.Bytes < copyTreeLarge {
		t.Fatalf("to the VM: %+v", res)
	}
	t.Logf("host to VM: %d MiB in %.1fs, %.1f MiB/s", res.Bytes>>20, float64(res.DurationMillis)/1000,
		float64(res.Bytes)/(1<<20)/(float64(res.DurationMillis)/1000))
	sameTree(t, "in the VM", guestEntries(t, p, alias, "/root/copy"), want)

	// VM to host: into an existing directory, under the source's name.
	back := filepath.Join(p.dir, "back")
	if err := os.Mkdir(back, 0o755); err != nil {
		t.Fatal(err)
	}
	out := p.must("cp", "-r", alias+":/root/copy", back)
	t.Logf("VM to host: %s", strings.TrimSpace(out))
	sameTree(t, "back on the host", hostEntries(t, filepath.Join(back, "copy")), want)
	if b, _ := os.ReadFile(outside); string(b) != "host secret\n" {
		t.Fatalf("the file the link points to changed: %q", b)
	}

	// A guest that means harm: a link to a host directory, copied to the
	// host as a link; then a directory of that name with a file in it. The
	// second copy over the first replaces the link by the directory, and
	// nothing is written through the link.
	hostside := filepath.Join(p.dir, "hostside")
	if err := os.Mkdir(hostside, 0o755); err != nil {
		t.Fatal(err)
	}
	p.must("execute", alias, "ln -s "+hostside+" /root/copy/evil")
	p.must("cp", "-r", alias+":/root/copy", back)
	if l, err := os.Readlink(filepath.Join(back, "copy/evil")); err != nil || l != hostside {
		t.Fatalf("evil on the host: %q %v, want the link", l, err)
	}
	p.must("execute", alias, "rm /root/copy/evil && mkdir /root/copy/evil && echo pwned > /root/copy/evil/x")
	p.must("cp", "-r", alias+":/root/copy", back)
	if ents, _ := os.ReadDir(hostside); len(ents) != 0 {
		t.Fatalf("written through the link into %s: %v", hostside, ents)
	}
	if b, err := os.ReadFile(filepath.Join(back, "copy/evil/x")); err != nil || string(b) != "pwned\n" {
		t.Fatalf("evil/x on the host: %q %v", b, err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "host secret\n" {
		t.Fatalf("the file a link points to changed: %q", b)
	}

	// A signal part way: exit 7, the guest stops sending (the agent closes
	// the file it was reading), and the host keeps whole files only.
	cut := filepath.Join(p.dir, "cut")
	cmd := exec.Command(filepath.Join(binDir, "vers"), "cp", "-r", alias+":/root/copy", cut)
	cmd.Dir, cmd.Env = p.dir, append(os.Environ(), p.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the large file to arrive in part", 2*time.Minute, func() bool {
		tmps, _ := filepath.Glob(filepath.Join(cut, "src", ".large.bin.vers-*"))
		for _, tmp := range tmps {
			if fi, err := os.Stat(tmp); err == nil && fi.Size() > 1<<20 {
				return true
			}
		}
		return false
	})
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("interrupted copy: %v, exit %d, want 7", err, cmd.ProcessState.ExitCode())
	}
	waitFor(t, "the agent to close the file it sent", time.Minute, func() bool {
		return !strings.Contains(p.must("execute", alias, "ls -l /proc/1/fd"), "large.bin")
	})
	if tmps, _ := filepath.Glob(filepath.Join(cut, "src", ".*vers-*")); len(tmps) != 0 {
		t.Fatalf("left on the host: %v", tmps)
	}
	if _, err := os.Stat(filepath.Join(cut, "src", "large.bin")); !os.IsNotExist(err) {
		t.Fatalf("the large file is on the host after the interrupt: %v", err)
	}

	// A full VM filesystem: exit 8 at once; the files copied before stay,
	// whole, and no part of the one that did not fit.
	p.must("execute", alias, "mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs /mnt/small")
	r = p.expect(8, "full", "cp", "-r", src, alias+":/mnt/small/copy")
	if r.dur > 20*time.Second {
		t.Fatalf("a full filesystem took %v to report", r.dur)
	}
	t.Logf("full: %s", strings.TrimSpace(r.err))
	left := p.must("execute", alias, "cd /mnt/small/copy && find . -type f | sort && cat build.sh")
	if !strings.Contains(left, "./build.sh\n") || !strings.Contains(left, "contents of build.sh") ||
		strings.Contains(left, "vers-") || strings.Contains(left, "large.bin") {
		t.Fatalf("left in the full filesystem:\n%s", left)
	}
}
