package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vers/api"
	"vers/client"
	"vers/internal/rampool"
)

// The branching benchmark's machine: a 1 GiB guest with half of it written.
const (
	branchMemMiB  = 1024
	branchFillMiB = 512
	// Branches of the root, one child each, killed after (>= 5 for the
	// pause percentiles and the 1st-vs-5th comparison).
	branchRepeats = 6
	// Branches at depth 1 and depth 3, alternated.
	branchDepthPairs = 5
	branchFanout     = 10
	// How long the fan-out's children are left alone before their memory
	// is read: long enough for boot-time writes after the restore to end.
	branchIdle = 5 * time.Second
)

// branchFill writes branchFillMiB of random data into a tmpfs inside the
// guest, so those pages stay in RAM for as long as the VM lives. A tmpfs of
// its own: the guest's /dev/shm is capped at half of RAM, less than 512 MiB.
// Random, not zeros: a zero page costs nothing to snapshot or to share.
var branchFill = fmt.Sprintf(`set -e
mkdir -p /run/vers-bench-fill
mount -t tmpfs -o size=%dm vers-bench-fill /run/vers-bench-fill
head -c %dM /dev/urandom > /run/vers-bench-fill/x
stat -c %%s /run/vers-bench-fill/x`, branchFillMiB+64, branchFillMiB)

// BenchmarkBranch measures `vers branch` on a 1 GiB VM with 512 MiB of its
// RAM written by a guest process. It is one fixed experiment (run it with
// -benchtime=1x; b.N does not change it):
//
//   - cold: baseline, `vers run` of the same 1 GiB VM to agent-ready, three
//     times (before, between and after the branches);
//   - branch-N: branchRepeats branches of the root, one child each, killed
//     after: the parent's pause (pause_ms), the child's first_ready_ms, the
//     CLI's wall time, and e2e — from the start of `vers branch` until
//     `vers execute CHILD true` has succeeded;
//   - fanout: `vers branch --count 10`, then, after branchIdle, the host
//     memory the ten children added: their QEMU processes' PSS plus the
//     snapshot's frozen RAM file in the RAM directory;
//   - depth: root → c1 → c2 kept; then branches of the root (depth 1) and of
//     c2 (depth 3) alternated, each child killed after.
//
// The phases of each branch (prepare, freeze, children) are read from the
// daemon's log, to show where the time goes.
//
// It runs twice, once per way of freezing RAM (see internal/vm): ram=clone,
// the default, on the in-memory filesystem whose files can be cloned, and
// ram=copy, in a plain directory of the home's own, where RAM is copied into
// a holder.
func BenchmarkBranch(b *testing.B) {
	requireVMs(b)
	b.Run("ram=clone", func(b *testing.B) { benchmarkBranch(b, false) })
	b.Run("ram=copy", func(b *testing.B) { benchmarkBranch(b, true) })
}

func benchmarkBranch(b *testing.B, copyRAM bool) {
	h := newHome(b)
	defer h.close()
	if copyRAM {
		// A directory of its own on a tmpfs: files there cannot be cloned.
		dir, err := os.MkdirTemp("/dev/shm", "vers-bench-")
		if err != nil {
			b.Skip("no tmpfs at /dev/shm")
		}
		defer os.RemoveAll(dir)
		h.ramDir = filepath.Join(dir, "ram")
	}
	c := h.start()
	ctx := context.Background()

	var cold, coldServer samples
	coldBoot := func() {
		v, d := h.runVM(fmt.Sprintf("cold-%d", len(cold)))
		cold = append(cold, d)
		coldServer = append(coldServer, time.Duration(v.BootMillis)*time.Millisecond)
		h.must("kill", v.ID)
	}
	coldBoot()

	root, _ := h.runVM("root")
	var out bytes.Buffer
	res, err := c.Exec(ctx, root.ID, api.ExecRequest{Command: branchFill}, client.ExecIO{Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("filling the guest's RAM: exit %d, %v\n%s", res.ExitCode, err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != strconv.Itoa(branchFillMiB<<20) {
		b.Fatalf("guest fill file has %s bytes, want %d", got, branchFillMiB<<20)
	}

	// The root's repeated branches; depth-1 branches below add to the
	// pause samples, which are all the root's.
	var all []branchSample
	for i := 0; i < branchRepeats; i++ {
		s := h.branchTimed(c, root.ID, fmt.Sprintf("rep-%d", i+1))
		if i == 0 {
			// Not timed: the child holds the parent's written RAM.
			h.mustExecOut(c, s.child, "stat -c %s /run/vers-bench-fill/x", strconv.Itoa(branchFillMiB<<20))
		}
		h.must("kill", s.child)
		all = append(all, s)
	}
	coldBoot()

	// Fan-out: ten children from one snapshot.
	pool0, pooled := poolBytes()
	start := time.Now()
	fout, _ := h.must("branch", root.ID, "--alias", "fan", "--count", strconv.Itoa(branchFanout), "--format", "json")
	fanWall := time.Since(start)
	fan := parseBranch(b, fout)
	if len(fan.Children) != branchFanout {
		b.Fatalf("vers branch --count %d made %d children", branchFanout, len(fan.Children))
	}
	time.Sleep(branchIdle)
	mem := h.fanoutMemory(fan, root.ID, pool0)
	for _, ch := range fan.Children {
		h.must("kill", ch.ID)
	}

	// Depth: keep root → c1 → c2, then alternate depth 1 and depth 3.
	c1 := h.branchTimed(c, root.ID, "c1")
	c2 := h.branchTimed(c, c1.child, "c2")
	all = append(all, c1)
	var depth1, depth3 []branchSample
	for i := 0; i < branchDepthPairs; i++ {
		first, second := &depth1, &depth3
		firstRef, secondRef := root.ID, c2.child
		if i%2 == 1 { // neither side always runs right after a kill
			first, second, firstRef, secondRef = second, first, secondRef, firstRef
		}
		for _, step := range []struct {
			dst *[]branchSample
			ref string
		}{{first, firstRef}, {second, secondRef}} {
			s := h.branchTimed(c, step.ref, fmt.Sprintf("d-%d-%d", i, len(*step.dst)))
			h.must("kill", s.child)
			*step.dst = append(*step.dst, s)
		}
	}
	all = append(all, depth1...)
	h.must("kill", "-r", c1.child)
	coldBoot()

	logPhases := parseBranchLog(h.readLog())
	phase := func(set []branchSample, key string) samples {
		var s samples
		for _, x := range set {
			if ms, ok := logPhases[x.snapshot][key]; ok {
				s = append(s, time.Duration(ms)*time.Millisecond)
			}
		}
		return s
	}

	rep := all[:branchRepeats]
	for _, set := range []struct {
		name string
		s    []branchSample
	}{{"repeated", rep}, {"root to c1", []branchSample{c1}}, {"c1 to c2", []branchSample{c2}}, {"depth-1", depth1}, {"depth-3", depth3}} {
		for i, x := range set.s {
			b.Logf("%s #%d: pause %.1f ms, first ready %d ms, e2e %d ms, phases %v",
				set.name, i+1, x.pause, x.firstReady, x.e2e.Milliseconds(), logPhases[x.snapshot])
		}
	}
	b.Logf("fan-out of %d: pause %.1f ms, first ready %d ms, all ready %d ms, CLI %d ms, phases %v",
		branchFanout, fan.PauseMillis, fan.FirstReadyMillis, fan.AllReadyMillis, fanWall.Milliseconds(), logPhases[fan.SnapshotID])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(len(all)), "root-branches")
	report(b, "cold", cold)
	report(b, "cold-versd", coldServer)
	report(b, "pause", field(all, branchSample.pauseD))
	report(b, "first-ready", field(rep, branchSample.firstReadyD))
	report(b, "branch-cli", field(rep, branchSample.cliD))
	report(b, "e2e", field(rep, branchSample.e2eD))
	report(b, "freeze", phase(rep, "freeze_ms"))
	report(b, "children", phase(rep, "children_ms"))
	coldP50 := cold.percentile(50)
	b.ReportMetric(ratio(field(rep, branchSample.e2eD).percentile(50), coldP50), "e2e/cold-p50")
	b.ReportMetric(ratio(field(rep, branchSample.firstReadyD).percentile(50), coldP50), "first-ready/cold-p50")

	b.ReportMetric(ms(fanWall), "fanout-cli-ms")
	b.ReportMetric(float64(fan.AllReadyMillis), "fanout-all-ready-ms")
	b.ReportMetric(float64(fan.FirstReadyMillis), "fanout-first-ready-ms")
	b.ReportMetric(fan.PauseMillis, "fanout-pause-ms")
	b.ReportMetric(ratio(fanWall, coldP50), "fanout/cold-p50")
	b.ReportMetric(mem.childrenMiB, "fanout-children-pss-MiB")
	if !copyRAM {
		b.ReportMetric(mem.cacheMiB, "fanout-children-ram-cache-MiB")
	}
	b.ReportMetric(mem.snapMiB, "fanout-ram-files-MiB")
	b.ReportMetric(mem.childrenMiB+mem.snapMiB, "fanout-total-MiB")
	b.ReportMetric(mem.rootMiB, "root-pss-MiB")
	if pooled && !copyRAM {
		// Before the fan-out only the root runs: the RAM filesystem then
		// holds its written-back pages, a second copy beside its page cache
		// (which the host may reclaim: they are clean).
		b.ReportMetric(float64(pool0)/(1<<20), "root-ram-file-MiB")
	}
	if mem.rootMiB > 0 {
		b.ReportMetric((mem.childrenMiB+mem.snapMiB)/(branchFanout*mem.rootMiB), "fanout/10-roots")
	}

	d1, d3 := field(depth1, branchSample.firstReadyD), field(depth3, branchSample.firstReadyD)
	report(b, "depth1-first-ready", d1)
	report(b, "depth3-first-ready", d3)
	b.ReportMetric(ratio(d3.percentile(50), d1.percentile(50)), "depth3/depth1-first-ready-p50")
	p1, p3 := field(depth1, branchSample.pauseD), field(depth3, branchSample.pauseD)
	report(b, "depth1-pause", p1)
	report(b, "depth3-pause", p3)
	b.ReportMetric(ratio(p3.percentile(50), p1.percentile(50)), "depth3/depth1-pause-p50")
	// c1 → c2 is the first branch of a VM that was itself made by a branch.
	b.ReportMetric(c2.pause, "child-1st-branch-pause-ms")
	report(b, "depth1-freeze", phase(depth1, "freeze_ms"))
	report(b, "depth3-freeze", phase(depth3, "freeze_ms"))

	b.ReportMetric(float64(rep[0].firstReady), "first-ready-1st-ms")
	b.ReportMetric(float64(rep[4].firstReady), "first-ready-5th-ms")
	b.ReportMetric(ratio(rep[4].firstReadyD(), rep[0].firstReadyD()), "5th/1st-first-ready")
	b.ReportMetric(ms(rep[0].e2e), "e2e-1st-ms")
	b.ReportMetric(ms(rep[4].e2e), "e2e-5th-ms")
	b.ReportMetric(rep[0].pause, "pause-1st-ms")
	b.ReportMetric(rep[4].pause, "pause-5th-ms")
}

// branchSample is one timed `vers branch` of one child.
type branchSample struct {
	child, snapshot string
	pause           float64       // pause_ms
	firstReady      int64         // first_ready_ms
	cli             time.Duration // `vers branch` wall time
	e2e             time.Duration // until `vers execute CHILD true` succeeded
}

func (s branchSample) pauseD() time.Duration {
	return time.Duration(s.pause * float64(time.Millisecond))
}
func (s branchSample) firstReadyD() time.Duration {
	return time.Duration(s.firstReady) * time.Millisecond
}
func (s branchSample) cliD() time.Duration { return s.cli }
func (s branchSample) e2eD() time.Duration { return s.e2e }

func field(set []branchSample, f func(branchSample) time.Duration) samples {
	s := make(samples, len(set))
	for i, x := range set {
		s[i] = f(x)
	}
	return s
}

// runVM boots a branchMemMiB VM with `vers run` and returns it and the
// command's wall time (it returns at agent-ready).
func (h *home) runVM(alias string) (api.VM, time.Duration) {
	h.b.Helper()
	out, d := h.must("run", "--mem-size-mib", strconv.Itoa(branchMemMiB), "--vm-alias", alias, "--format", "json")
	var v api.VM
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		h.b.Fatalf("vers run --format json: %v: %q", err, out)
	}
	if v.State != api.StateRunning {
		h.b.Fatalf("vers run returned VM %s in state %q", v.ID, v.State)
	}
	return v, d
}

// branchTimed makes one child of ref with the CLI and times it until the
// child has run `true` through `vers execute`.
func (h *home) branchTimed(c *client.Client, ref, alias string) branchSample {
	h.b.Helper()
	start := time.Now()
	out, cli := h.must("branch", ref, "--alias", alias, "--format", "json")
	res := parseBranch(h.b, out)
	if len(res.Children) != 1 {
		h.b.Fatalf("vers branch made %d children, want 1", len(res.Children))
	}
	child := res.Children[0].ID
	// The branch returns once the child's agent answered, so the first
	// execute is expected to succeed; retrying keeps a slow start measured
	// instead of failing.
	deadline := start.Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, _, err := h.vers(ctx, "execute", child, "true")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			h.b.Fatalf("child %s of %s never ran `true`: %v", child, ref, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return branchSample{
		child: child, snapshot: res.SnapshotID,
		pause: res.PauseMillis, firstReady: res.FirstReadyMillis,
		cli: cli, e2e: time.Since(start),
	}
}

func parseBranch(b *testing.B, out string) api.BranchResponse {
	b.Helper()
	var res api.BranchResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.Fatalf("vers branch --format json: %v: %q", err, out)
	}
	return res
}

// mustExecOut runs a shell command in a VM and checks its trimmed stdout.
func (h *home) mustExecOut(c *client.Client, ref, cmd, want string) {
	h.b.Helper()
	var out bytes.Buffer
	res, err := c.Exec(context.Background(), ref, api.ExecRequest{Command: cmd}, client.ExecIO{Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		h.b.Fatalf("%s in %s: exit %d, %v\n%s", cmd, ref, res.ExitCode, err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != want {
		h.b.Fatalf("%s in %s printed %q, want %q", cmd, ref, got, want)
	}
}

// fanoutMem is what a fan-out's children cost the host, in MiB.
type fanoutMem struct {
	childrenMiB float64 // sum of the children's QEMU PSS
	// cacheMiB (clone only): the page cache of the children's own RAM files,
	// mapped or not. A child's page-ins read 2 MiB around each page it
	// touches (QEMU asks for huge pages), so most of it is unmapped, clean
	// and the first thing the host reclaims; PSS counts the mapped part.
	cacheMiB float64
	// snapMiB: the RAM files the fan-out added. Copy: the blocks of the
	// snapshot's frozen RAM file. Clone: how much the in-memory filesystem
	// that holds every RAM file grew (shared blocks count once there).
	snapMiB float64
	rootMiB float64 // the parent's QEMU PSS: what one full VM costs
}

// poolBytes is the host memory behind the default RAM directory's files
// (internal/rampool), each shared block once; false without such a pool.
func poolBytes() (int64, bool) { return rampool.ImageBytes(hostRAMPoolDir()) }

// fanoutMemory reads the children's QEMU pids from `vers status --format
// json`, as a user would, and what the RAM files added (pool0: the RAM
// filesystem's size before the fan-out). A child's PSS includes the RAM
// pages it has read or written; those it wrote may also be in the RAM
// files already, so the sum may count them twice: it errs high.
func (h *home) fanoutMemory(fan api.BranchResponse, rootID string, pool0 int64) fanoutMem {
	h.b.Helper()
	var res fanoutMem
	kids, root := h.childrenPSS(fan, rootID)
	for _, x := range kids {
		res.childrenMiB += x
	}
	res.rootMiB = root
	if h.ramDir == "" {
		for _, ch := range fan.Children {
			n, err := resident(filepath.Join(hostRAMDir(), ch.ID+".ram"))
			if err != nil {
				h.b.Fatalf("page cache of VM %s's RAM file: %v", ch.ID, err)
			}
			res.cacheMiB += float64(n) / (1 << 20)
		}
		if pool, ok := poolBytes(); ok {
			res.snapMiB = float64(pool-pool0) / (1 << 20)
			return res
		}
	}
	ramDir := h.ramDir
	if ramDir == "" {
		ramDir = hostRAMDir()
	}
	snap := filepath.Join(ramDir, "snap-"+fan.SnapshotID+".ram")
	var st syscall.Stat_t
	if err := syscall.Stat(snap, &st); err != nil {
		h.b.Fatalf("the snapshot's RAM file: %v", err)
	}
	res.snapMiB = float64(st.Blocks*512) / (1 << 20)
	return res
}

// pids maps every VM's id to its QEMU's pid, read from `vers status
// --format json` as a user would.
func (h *home) pids() map[string]int {
	h.b.Helper()
	out, _ := h.must("status", "--format", "json")
	var vms []api.VM
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		h.b.Fatalf("vers status --format json: %v: %q", err, out)
	}
	pids := map[string]int{}
	for _, v := range vms {
		pids[v.ID] = v.PID
	}
	return pids
}

// resident is how many bytes of the file at path are in the page cache.
func resident(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0, err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer syscall.Munmap(m)
	page := int64(os.Getpagesize())
	vec := make([]byte, (st.Size()+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, e
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n * page, nil
}

// readLog returns the daemon's log ("" if it cannot be read: the phase
// figures are then left out).
func (h *home) readLog() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "versd.log"))
	return string(b)
}

// parseBranchLog collects the integer "_ms" and "_us" fields of the
// daemon's "branched" log lines (logfmt), by snapshot id.
func parseBranchLog(log string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		snap := ""
		vals := map[string]int64{}
		branched := false
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			switch {
			case k == "msg":
				branched = v == "branched"
			case k == "snapshot":
				snap = v
			case strings.HasSuffix(k, "_ms") || strings.HasSuffix(k, "_us"):
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					vals[k] = n
				}
			}
		}
		if branched && snap != "" {
			out[snap] = vals
		}
	}
	return out
}

func TestParseBranchLog(t *testing.T) {
	const log = `time=2026-01-01T00:00:00.000Z level=INFO msg="vm started" id=x boot_ms=2900
time=2026-01-01T00:00:01.000Z level=INFO msg=branched parent=p snapshot=s1 children=1 pause_ms=7 first_ready_ms=2325 all_ready_ms=2325 prepare_ms=70 freeze_ms=2048 state_ms=4 children_ms=201 pause_disk_us=3140
time=2026-01-01T00:00:02.000Z level=INFO msg=branched parent=p snapshot=s2 children=10 pause_ms=43 freeze_ms=x children_ms=1223
time=2026-01-01T00:00:03.000Z level=ERROR msg="record snapshot" snapshot=s3 freeze_ms=5
`
	got := parseBranchLog(log)
	if len(got) != 2 {
		t.Fatalf("got %d snapshots, want 2: %v", len(got), got)
	}
	for _, tc := range []struct {
		snap, key string
		want      int64
		ok        bool
	}{
		{"s1", "freeze_ms", 2048, true},
		{"s1", "children_ms", 201, true},
		{"s1", "pause_ms", 7, true},
		{"s1", "pause_disk_us", 3140, true},
		{"s2", "children_ms", 1223, true},
		{"s2", "freeze_ms", 0, false}, // not a number
		{"s3", "freeze_ms", 0, false}, // not a branched line
	} {
		v, ok := got[tc.snap][tc.key]
		if v != tc.want || ok != tc.ok {
			t.Errorf("%s %s = %d, %v; want %d, %v", tc.snap, tc.key, v, ok, tc.want, tc.ok)
		}
	}
}

func TestBranchSampleFields(t *testing.T) {
	s := branchSample{pause: 7.5, firstReady: 1200, cli: time.Second, e2e: 2 * time.Second}
	if got := s.pauseD(); got != 7500*time.Microsecond {
		t.Errorf("pauseD = %v", got)
	}
	if got := field([]branchSample{s, s}, branchSample.firstReadyD); len(got) != 2 || got[1] != 1200*time.Millisecond {
		t.Errorf("field(firstReadyD) = %v", got)
	}
}
