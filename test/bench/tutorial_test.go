package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/internal/tutorial"
)

const (
	// Branches of db-root, one child each, killed after.
	tutorialRepeats = 8
	// The chain below db-root whose tip is branched against db-root.
	tutorialDepth = 5
	// Branches of the tip and of db-root, alternated.
	tutorialDepthPairs = 3
	// The big fan-out's idle children are left alone this long before their
	// memory is read.
	tutorialIdle = 10 * time.Second
	// The 100-child fan-out's VM size, and the RAM sizes the pause is
	// measured at.
	smallMemMiB = 512
)

var pauseSizesMiB = []int{512, 2048, 4096}

// BenchmarkTutorialBranch measures branching where users branch: the
// tutorial's db-root (1 GiB of RAM, a 2 GiB disk) as the tutorial leaves it
// before Step 3 — apt-get update, sqlite3 installed, the base schema and the
// helper script, all typed through `vers connect` — built once. It is one
// fixed experiment (run it with -benchtime=1x); its parts are sub-benchmarks
// that can be picked with -bench 'TutorialBranch/NAME':
//
//   - repeat: tutorialRepeats branches of db-root, one child each, killed
//     after: the CLI's wall time, versd's first_ready, e2e until `vers
//     execute CHILD true` succeeded, and where the child's start went
//     (versd's log: RAM file, QEMU up, state loaded, agent synced); then the
//     tutorial's `.tables` as the first command in the fresh child, against
//     the same command in db-root, which has run for minutes. A cold `vers
//     run` of the same VM is measured before, between and after.
//   - depth5: a chain of tutorialDepth branches below db-root, then branches
//     of its tip and of db-root alternated.
//   - count10, count50: `vers branch --count N` of db-root, its wall time;
//     after tutorialIdle, each idle child's PSS.
//   - count100: `vers branch --count 100` of a 512 MiB VM.
//   - pause-by-size: the parent's pause on 512 MiB, 2 GiB and 4 GiB guests.
func BenchmarkTutorialBranch(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	if err := os.WriteFile(filepath.Join(h.project, "vers.toml"), []byte(tutorial.Config), 0o644); err != nil {
		b.Fatal(err)
	}
	c := h.start()
	health, err := c.Health(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("accelerator: %s", health.Accel)

	var cold samples
	coldBoot := func() {
		v, d := h.tutorialVM(fmt.Sprintf("cold-%d", len(cold)))
		cold = append(cold, d)
		h.must("kill", v.ID)
	}
	coldBoot()

	root, _ := h.tutorialVM(tutorial.Root)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	out, _, err := h.versIn(ctx, tutorial.Setup(0), "connect", root.ID)
	cancel()
	if err != nil {
		b.Fatalf("the tutorial's setup through vers connect: %v\n%s", err, out)
	}
	b.Logf("db-root set up through vers connect in %s", time.Since(start).Round(time.Second))
	h.mustExecOut(c, root.ID, "test -s "+tutorial.DB+" && echo ok", "ok")
	coldBoot()

	// Each part runs as a sub-benchmark of its own with h reporting to it.
	part := func(name string, f func(b *testing.B)) {
		parent := h.b
		b.Run(name, func(sb *testing.B) {
			h.b = sb
			defer func() { h.b = parent }()
			f(sb)
		})
	}

	part("repeat", func(b *testing.B) {
		var all []branchSample
		var firstExec, warmExec samples
		for i := range tutorialRepeats {
			s := h.branchTimed(c, root.ID, fmt.Sprintf("rep-%d", i+1))
			_, d := h.must("execute", s.child, tutorial.TablesCmd)
			firstExec = append(firstExec, d)
			_, d = h.must("execute", root.ID, tutorial.TablesCmd)
			warmExec = append(warmExec, d)
			h.must("kill", s.child)
			all = append(all, s)
			if i == tutorialRepeats/2-1 {
				coldBoot()
			}
		}
		coldBoot()
		phases := parseBranchLog(h.readLog())
		phase := func(key string) samples {
			var s samples
			for _, x := range all {
				unit := time.Millisecond
				if strings.HasSuffix(key, "_us") {
					unit = time.Microsecond
				}
				if v, ok := phases[x.snapshot][key]; ok {
					s = append(s, time.Duration(v)*unit)
				}
			}
			return s
		}
		for i, x := range all {
			b.Logf("#%d: pause %.1f ms, first ready %d ms, CLI %d ms, e2e %d ms, first .tables %d ms (db-root %d ms), phases %v",
				i+1, x.pause, x.firstReady, x.cli.Milliseconds(), x.e2e.Milliseconds(),
				firstExec[i].Milliseconds(), warmExec[i].Milliseconds(), phases[x.snapshot])
		}
		b.ReportMetric(0, "ns/op")
		coldP50 := cold.percentile(50)
		report(b, "cold", cold)
		report(b, "pause", field(all, branchSample.pauseD))
		report(b, "first-ready", field(all, branchSample.firstReadyD))
		report(b, "branch-cli", field(all, branchSample.cliD))
		report(b, "e2e", field(all, branchSample.e2eD))
		for _, k := range []string{"prepare_ms", "freeze_ms", "children_ms", "first_ram_ms", "first_qemu_ms", "first_load_ms", "first_agent_ms",
			"pause_stop_us", "pause_disk_us", "pause_ram_us", "pause_state_us", "pause_cont_us"} {
			b.ReportMetric(ms(phase(k).percentile(50)), strings.TrimSuffix(strings.TrimSuffix(k, "_ms"), "_us")+"-p50-ms")
		}
		b.ReportMetric(ratio(field(all, branchSample.e2eD).percentile(50), coldP50), "e2e/cold-p50")
		b.ReportMetric(ratio(field(all, branchSample.firstReadyD).percentile(50), coldP50), "first-ready/cold-p50")
		b.ReportMetric(ms(field(all, branchSample.cliD).percentile(50)-field(all, branchSample.firstReadyD).percentile(50)), "cli-minus-first-ready-p50-ms")
		report(b, "first-exec", firstExec)
		report(b, "warm-exec", warmExec)
		b.ReportMetric(ratio(firstExec.percentile(50), warmExec.percentile(50)), "first-exec/warm-exec-p50")
		b.ReportMetric(ratio(all[len(all)-1].firstReadyD(), all[0].firstReadyD()), "last/1st-first-ready")
	})

	part("depth5", func(b *testing.B) {
		tip := root.ID
		var chain []string
		for i := range tutorialDepth {
			s := h.branchTimed(c, tip, fmt.Sprintf("deep-%d", i+1))
			tip = s.child
			chain = append(chain, s.child)
		}
		var d1, d5 []branchSample
		for i := range tutorialDepthPairs {
			order := []string{root.ID, tip}
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, ref := range order {
				s := h.branchTimed(c, ref, fmt.Sprintf("dp-%d-%s", i, ref[:6]))
				h.must("kill", s.child)
				if ref == tip {
					d5 = append(d5, s)
				} else {
					d1 = append(d1, s)
				}
			}
		}
		h.must("kill", "-r", chain[0])
		b.ReportMetric(0, "ns/op")
		a, z := field(d1, branchSample.firstReadyD), field(d5, branchSample.firstReadyD)
		report(b, "depth1-first-ready", a)
		report(b, "depth5-first-ready", z)
		b.ReportMetric(ratio(z.percentile(50), a.percentile(50)), "depth5/depth1-first-ready-p50")
		report(b, "depth5-pause", field(d5, branchSample.pauseD))
	})

	for _, n := range []int{10, 50} {
		part(fmt.Sprintf("count%d", n), func(b *testing.B) {
			h.countBranch(b, root.ID, n, cold.percentile(50))
		})
	}

	part("count100", func(b *testing.B) {
		small, _ := h.sizedVM("small", smallMemMiB)
		h.countBranch(b, small.ID, 100, 0)
		h.must("kill", "-r", small.ID)
	})

	part("pause-by-size", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		for _, mib := range pauseSizesMiB {
			v, _ := h.sizedVM(fmt.Sprintf("size-%d", mib), mib)
			var set []branchSample
			for i := range 4 {
				s := h.branchTimed(c, v.ID, fmt.Sprintf("s%d-%d", mib, i))
				h.must("kill", s.child)
				set = append(set, s)
			}
			h.must("kill", v.ID)
			p := field(set, branchSample.pauseD)
			b.Logf("%d MiB: pauses %v", mib, p)
			b.ReportMetric(ms(p.percentile(50)), fmt.Sprintf("pause-%dMiB-p50-ms", mib))
			b.ReportMetric(ms(field(set, branchSample.firstReadyD).percentile(50)), fmt.Sprintf("first-ready-%dMiB-p50-ms", mib))
		}
	})
}

// tutorialVM boots a VM of the project's vers.toml (the tutorial's) with
// `vers run`, and the command's wall time.
func (h *home) tutorialVM(alias string) (api.VM, time.Duration) {
	h.b.Helper()
	out, d := h.must("run", "--vm-alias", alias, "--format", "json")
	return h.parseVM(out), d
}

// sizedVM is tutorialVM with mib of RAM.
func (h *home) sizedVM(alias string, mib int) (api.VM, time.Duration) {
	h.b.Helper()
	out, d := h.must("run", "--vm-alias", alias, "--mem-size-mib", strconv.Itoa(mib), "--format", "json")
	return h.parseVM(out), d
}

func (h *home) parseVM(out string) api.VM {
	h.b.Helper()
	var v api.VM
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		h.b.Fatalf("vers run --format json: %v: %q", err, out)
	}
	if v.State != api.StateRunning {
		h.b.Fatalf("vers run returned VM %s in state %q", v.ID, v.State)
	}
	return v
}

// countBranch runs `vers branch REF --count n`, reports its wall time (and
// its ratio to coldP50 when not 0), checks every child runs a command, and
// after tutorialIdle reports the idle children's PSS; then kills them.
func (h *home) countBranch(b *testing.B, ref string, n int, coldP50 time.Duration) {
	start := time.Now()
	out, _ := h.must("branch", ref, "--alias", fmt.Sprintf("n%d", n), "--count", strconv.Itoa(n), "--format", "json")
	wall := time.Since(start)
	fan := parseBranch(b, out)
	if len(fan.Children) != n {
		b.Fatalf("vers branch --count %d made %d children", n, len(fan.Children))
	}
	ids := make([]string, len(fan.Children))
	for i, ch := range fan.Children {
		ids[i] = ch.ID
	}
	// How many children answer: one fan-out execute over all of them. On a
	// host the children overload (each idle TCG guest costs a few percent
	// of a core) some may not in time; that is a figure, not a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	fout, fanD, _ := h.vers(ctx, "execute", "--on", strings.Join(ids, ","), "--format", "json", "true")
	cancel()
	var fr api.FanoutResult
	if err := json.Unmarshal([]byte(fout), &fr); err != nil {
		b.Fatalf("vers execute --on --format json: %v: %q", err, fout)
	}
	answered := 0
	for _, r := range fr.Results {
		if r.Error == nil && r.ExitCode == 0 {
			answered++
		}
	}
	time.Sleep(tutorialIdle)
	pss, parent := h.childrenPSS(fan, ref)
	var sum float64
	for _, x := range pss {
		sum += x
	}
	for _, id := range ids {
		h.must("kill", id)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(wall), "cli-ms")
	b.ReportMetric(float64(fan.FirstReadyMillis), "first-ready-ms")
	b.ReportMetric(float64(fan.AllReadyMillis), "all-ready-ms")
	b.ReportMetric(fan.PauseMillis, "pause-ms")
	if coldP50 > 0 {
		b.ReportMetric(ratio(wall, coldP50), "cli/cold-p50")
	}
	b.ReportMetric(float64(answered), "answered")
	b.ReportMetric(ms(fanD), "fanout-true-ms")
	b.ReportMetric(sum/float64(n), "child-pss-mean-MiB")
	b.ReportMetric(slices.Max(pss), "child-pss-max-MiB")
	b.ReportMetric(parent, "parent-pss-MiB")
	b.Logf("--count %d: CLI %s, first ready %d ms, all ready %d ms, %d of %d ran `true` in %s, children's PSS %.0f MiB (max %.1f MiB each)",
		n, wall.Round(time.Millisecond), fan.FirstReadyMillis, fan.AllReadyMillis, answered, n, fanD.Round(time.Millisecond), sum, slices.Max(pss))
}

// childrenPSS is each child's QEMU PSS and the parent's, in MiB, read by
// the pids `vers status` gives.
func (h *home) childrenPSS(fan api.BranchResponse, parent string) ([]float64, float64) {
	h.b.Helper()
	pid := h.pids()
	pss := func(id string) float64 {
		if pid[id] <= 0 {
			h.b.Fatalf("vers status shows no pid for VM %s", id)
		}
		m, err := readMem(pid[id])
		if err != nil {
			h.b.Fatalf("memory of VM %s (pid %d): %v", id, pid[id], err)
		}
		return m.pssMiB()
	}
	var res []float64
	for _, ch := range fan.Children {
		res = append(res, pss(ch.ID))
	}
	return res, pss(parent)
}
