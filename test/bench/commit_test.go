package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/client"
)

// commitChange is what the guest changes between the first and the second
// commit: a file of random data in its RAM (a tmpfs), written afresh.
const commitChangeMiB = 10

// commitSeries is how many successive commits of the VM are made, each
// after commitChangeMiB of change.
const commitSeries = 10

// commitRepeats is how many times the timed steps that have a baseline in
// the same run (branch pause, run-commit, sleep and wake) are repeated.
const commitRepeats = 3

// BenchmarkCommit measures commits on the branching benchmark's machine (a
// 1 GiB guest with 512 MiB written), in one fixed experiment (-benchtime=1x):
//
//   - cold: baseline, `vers run` of the same VM to agent-ready;
//   - branch: baseline, the pause of `vers branch` of the same VM;
//   - commit-1: the first commit — its pause, its total time until
//     durable, the bytes it added on disk (the images and the RAM);
//   - commit-2 … commit-10: nine more commits, each after the guest rewrote
//     commitChangeMiB of RAM: the bytes each added, and the store's size
//     against one commit plus nine times the change;
//   - run-commit: `vers run-commit` until `vers execute VM true` succeeded,
//     each from the chunk store (the VM before it killed, so nothing of the
//     commit is on the host but its files), against cold;
//   - sleep and wake: one cycle of each, as the CLI sees them.
//
// The daemon's log says where the time goes: the freeze's phases, the
// writing of the commit, the restore.
func BenchmarkCommit(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	var cold samples
	coldBoot := func() {
		v, d := h.runVM(fmt.Sprintf("cold-%d", len(cold)))
		cold = append(cold, d)
		h.must("kill", v.ID)
	}
	coldBoot()
	root, _ := h.runVM("root")
	h.execOK(c, root.ID, branchFill)

	var branchPause samples
	for i := range commitRepeats {
		s := h.branchTimed(c, root.ID, fmt.Sprintf("b-%d", i))
		branchPause = append(branchPause, s.pauseD())
		h.must("kill", s.child)
	}
	first, firstWall := h.commitTimed(root.ID, "first")
	afterFirst := dirBytes(filepath.Join(h.dir, "chunks"))
	// Nine more, each after the guest rewrote commitChangeMiB of its RAM.
	var second api.CommitResponse
	var later samples
	for i := range commitSeries - 1 {
		h.execOK(c, root.ID, fmt.Sprintf("head -c %dM /dev/urandom > /run/vers-bench-fill/change", commitChangeMiB))
		res, _ := h.commitTimed(root.ID, "")
		if i == 0 {
			second = res
		}
		later = append(later, time.Duration(res.TotalMillis)*time.Millisecond)
	}
	stored := dirBytes(filepath.Join(h.dir, "chunks"))

	var restores samples
	var restoreServer samples
	for i := range commitRepeats {
		start := time.Now()
		out, _ := h.must("run-commit", "first", "--vm-alias", fmt.Sprintf("rc-%d", i), "--format", "json")
		var res api.RunCommitResponse
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.VMs) != 1 {
			b.Fatalf("run-commit --format json: %v: %q", err, out)
		}
		h.execOK(c, res.VMs[0].ID, "true")
		restores = append(restores, time.Since(start))
		restoreServer = append(restoreServer, time.Duration(res.RestoreMillis)*time.Millisecond)
		h.must("kill", res.VMs[0].ID)
		if i == 0 {
			coldBoot()
		}
	}
	var sleeps, wakes samples
	for range commitRepeats {
		_, d := h.must("sleep", root.ID)
		sleeps = append(sleeps, d)
		_, d = h.must("wake", root.ID)
		wakes = append(wakes, d)
		h.execOK(c, root.ID, "stat -c %s /run/vers-bench-fill/x")
	}
	coldBoot()

	for _, line := range strings.Split(h.readLog(), "\n") {
		if strings.Contains(line, `msg=committed`) || strings.Contains(line, `msg="commit restored"`) ||
			(strings.Contains(line, "msg=branched") && strings.Contains(line, "children=0")) {
			b.Log(line)
		}
	}
	b.Logf("commit 1: %+v (CLI %s); commit 2: %+v", first, firstWall, second)
	b.ReportMetric(0, "ns/op")
	report(b, "cold", cold)
	report(b, "branch-pause", branchPause)
	b.ReportMetric(first.PauseMillis, "commit1-pause-ms")
	b.ReportMetric(second.PauseMillis, "commit2-pause-ms")
	b.ReportMetric(ratio(time.Duration(first.PauseMillis*float64(time.Millisecond)), branchPause.percentile(50)), "commit1-pause/branch-pause-p50")
	b.ReportMetric(float64(first.TotalMillis), "commit1-total-ms")
	b.ReportMetric(float64(second.TotalMillis), "commit2-total-ms")
	b.ReportMetric(float64(first.Commit.AddedBytes)/(1<<20), "commit1-added-MiB")
	b.ReportMetric(float64(first.Commit.LogicalBytes)/(1<<20), "commit1-logical-MiB")
	b.ReportMetric(float64(second.Commit.AddedBytes)/(1<<20), "commit2-added-MiB")
	b.ReportMetric(float64(stored)/(1<<20), "chunks-on-disk-MiB")
	b.ReportMetric(float64(afterFirst)/(1<<20), "chunks-after-commit1-MiB")
	// Ten commits against one commit plus nine times the change.
	b.ReportMetric(float64(stored-afterFirst)/float64(commitSeries-1)/(1<<20), "per-later-commit-MiB")
	b.ReportMetric(float64(stored)/(float64(afterFirst)+float64((commitSeries-1)*commitChangeMiB<<20)), "10-commits/(1+9*change)")
	report(b, "later-commit-total", later)
	report(b, "run-commit", restores)
	report(b, "run-commit-restore", restoreServer)
	b.ReportMetric(ratio(restores.percentile(50), cold.percentile(50)), "run-commit/cold-p50")
	report(b, "sleep", sleeps)
	report(b, "wake", wakes)
	b.ReportMetric(ratio(sleeps.percentile(50)+wakes.percentile(50), cold.percentile(50)), "sleep+wake/cold-p50")
}

// commitTimed commits ref (with a tag, if not "") and returns the answer
// and the CLI's wall time.
func (h *home) commitTimed(ref, tag string) (api.CommitResponse, time.Duration) {
	h.b.Helper()
	args := []string{"commit", ref, "--format", "json"}
	if tag != "" {
		args = append(args, "--tag", tag)
	}
	out, d := h.must(args...)
	var res api.CommitResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		h.b.Fatalf("vers commit --format json: %v: %q", err, out)
	}
	return res, d
}

// execOK runs a command in a VM and fails the benchmark unless it exits 0.
func (h *home) execOK(c *client.Client, id, cmd string) string {
	h.b.Helper()
	var out bytes.Buffer
	res, err := c.Exec(context.Background(), id, api.ExecRequest{Command: cmd}, client.ExecIO{Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		h.b.Fatalf("exec %q in %s: exit %d, %v\n%s", cmd, id, res.ExitCode, err, out.String())
	}
	return out.String()
}

// dirBytes is the disk space the files under dir take.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
