package bench

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/tutorial"
)

// compareFan is how many children the fan-out runs `true` in.
const compareFan = 10

// compareRepeats is how many times each timed step is repeated.
const compareRepeats = 5

// BenchmarkCompare measures comparing branches on the tutorial's machine
// (1 GiB, 2 GiB disk, vers.toml of the tutorial, the base schema in
// SQLite), in one fixed experiment (-benchtime=1x):
//
//   - execute: baseline, one `vers execute VM true`;
//   - fan-out: `vers execute --children VM true` over compareFan children,
//     against execute (the target is ≤ 1.5×) and against the same ten
//     executes one after the other, and against the guests' own floor:
//     compareFan starts of `true` (timed inside the guest) spread over
//     the host's CPUs;
//   - diff: `vers diff A B` of two children that each changed a few files
//     (the first one after the branch, and warm ones), against the naive
//     way, measured in the same run: tar both trees out through the agent
//     and compare them on the host, hashing every file.
func BenchmarkCompare(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	mem, fs := strconv.Itoa(tutorialMemMiB), strconv.Itoa(tutorialFsMiB)
	out, _ := h.must("run", "--vm-alias", "db-root", "--mem-size-mib", mem, "--fs-size-vm-mib", fs, "--format", "json")
	var root api.VM
	if err := json.Unmarshal([]byte(out), &root); err != nil {
		b.Fatal(err)
	}
	h.execOK(c, root.ID, "mkdir -p /app/db && sqlite3 "+tutorial.DB+" 'CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT); CREATE TABLE products(id INTEGER PRIMARY KEY); CREATE TABLE orders(id INTEGER PRIMARY KEY);'")
	h.must("branch", "db-root", "--alias", "try", "--count", strconv.Itoa(compareFan))

	var single, fan, serial samples
	for range compareRepeats {
		_, d := h.must("execute", "db-root", "true")
		single = append(single, d)
		_, d = h.must("execute", "--children", "db-root", "true")
		fan = append(fan, d)
		start := time.Now()
		for i := 1; i <= compareFan; i++ {
			h.must("execute", "try-"+strconv.Itoa(i), "true")
		}
		serial = append(serial, time.Since(start))
	}
	// What the guests' own work costs the fan-out: under TCG starting a
	// process is tens of milliseconds of a guest's CPU, and compareFan
	// guests share the host's CPUs, so no fan-out can be quicker than
	// compareFan starts spread over them.
	spawn := h.guestSpawn(c, root.ID)
	floor := time.Duration(compareFan) * spawn / time.Duration(runtime.NumCPU())
	b.ReportMetric(ms(spawn), "guest-true-ms")
	b.ReportMetric(ms(floor), "fanout10-guest-floor-ms")
	b.ReportMetric(ratio(fan.percentile(50), floor), "fanout10/guest-floor")
	b.ReportMetric(ms(single.percentile(50)), "execute-p50-ms")
	b.ReportMetric(ms(fan.percentile(50)), "fanout10-p50-ms")
	b.ReportMetric(ms(serial.percentile(50)), "serial10-p50-ms")
	b.ReportMetric(ratio(fan.percentile(50), single.percentile(50)), "fanout10/execute")
	b.ReportMetric(ratio(fan.percentile(50), serial.percentile(50)), "fanout10/serial10")

	a, z := "try-1", "try-2"
	h.execOK(c, a, "sqlite3 "+tutorial.DB+" 'ALTER TABLE users ADD COLUMN premium INTEGER;' && echo a > /root/a.txt")
	h.execOK(c, z, "sqlite3 "+tutorial.DB+" 'CREATE TABLE inventory(id INTEGER);' && echo z > /root/z.txt && rm -f /etc/motd")
	var diffs, naive samples
	first := time.Duration(0)
	for i := range compareRepeats {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		out, d, err := h.vers(ctx, "diff", a, z, "--format", "json")
		cancel()
		var fd api.FSDiff
		if jerr := json.Unmarshal([]byte(out), &fd); jerr != nil || fd.Stat.Changed+fd.Stat.Added+fd.Stat.Removed < 4 {
			b.Fatalf("vers diff %s %s: %v %v: %s", a, z, err, jerr, out)
		}
		if i == 0 {
			first = d
			b.Logf("diff: %+v, %d ms in versd", fd.Stat, fd.DurationMillis)
			continue
		}
		diffs = append(diffs, d)
		if i <= 2 {
			naive = append(naive, naiveDiff(b, c, h.resolve(a), h.resolve(z)))
		}
	}
	b.ReportMetric(ms(first), "diff-first-ms")
	b.ReportMetric(ms(diffs.percentile(50)), "diff-p50-ms")
	b.ReportMetric(ms(naive.percentile(50)), "naive-p50-ms")
	b.ReportMetric(ratio(diffs.percentile(50), naive.percentile(50)), "diff/naive")
}

// The machine of the tutorial's vers.toml.
const (
	tutorialMemMiB = 1024
	tutorialFsMiB  = 2048
)

// resolve is the id of the VM alias.
func (h *home) resolve(alias string) string {
	h.b.Helper()
	out, _ := h.must("status", alias, "--format", "json")
	var v api.VM
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		h.b.Fatalf("status %s: %v: %s", alias, err, out)
	}
	return v.ID
}

// naiveDiff is the comparison done without vers diff: both trees go out as
// tar streams through the agent, at once, and the host hashes every entry
// and compares the two lists. It returns how long that took.
func naiveDiff(b *testing.B, c *client.Client, a, z string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	lists := make([]map[string]string, 2)
	errs := make([]error, 2)
	for i, id := range []string{a, z} {
		wg.Go(func() { lists[i], errs[i] = tarList(c, id) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	differ := 0
	for p, sum := range lists[0] {
		if lists[1][p] != sum {
			differ++
		}
	}
	for p := range lists[1] {
		if _, ok := lists[0][p]; !ok {
			differ++
		}
	}
	if differ < 4 {
		b.Fatalf("the naive comparison found %d differences", differ)
	}
	return time.Since(start)
}

// tarList reads the VM's root filesystem as tar and returns each entry's
// metadata and content hash by path.
func tarList(c *client.Client, id string) (map[string]string, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		res, err := c.Exec(context.Background(), id, api.ExecRequest{Command: "tar --one-file-system -C / --exclude=./proc --exclude=./sys " +
			"--exclude=./dev --exclude=./run --exclude=./tmp -cf - . 2>/dev/null"}, client.ExecIO{Stdout: pw})
		if err == nil && res.ExitCode > 1 {
			err = fmt.Errorf("tar in %s: exit %d", id, res.ExitCode)
		}
		pw.CloseWithError(err)
		done <- err
	}()
	out := map[string]string{}
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			pr.CloseWithError(err)
			return nil, err
		}
		sum := sha256.New()
		io.Copy(sum, tr)
		out[hdr.Name] = fmt.Sprintf("%c %o %d:%d %s %s", hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, hex.EncodeToString(sum.Sum(nil)))
	}
	io.Copy(io.Discard, pr)
	return out, <-done
}

// guestSpawnRuns is how many times guestSpawn starts `true`.
const guestSpawnRuns = 20

// guestSpawn is what one start of `true`, to its exit, costs inside the
// guest: timed by the guest's clock over guestSpawnRuns starts from a
// shell, the second of two rounds (the first translates the code).
func (h *home) guestSpawn(c *client.Client, id string) time.Duration {
	h.b.Helper()
	cmd := fmt.Sprintf("for r in 1 2; do s=$(date +%%s%%N); for i in $(seq %d); do /bin/true; done; e=$(date +%%s%%N); done; echo $((e-s))", guestSpawnRuns)
	out := strings.TrimSpace(h.execOK(c, id, cmd))
	ns, err := strconv.ParseInt(out, 10, 64)
	if err != nil || ns <= 0 {
		h.b.Fatalf("guest spawn timing %q: %v", out, err)
	}
	return time.Duration(ns / guestSpawnRuns)
}
