package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPause: a paused VM's guest does not run — its own clock and a
// counter it keeps stand still while the host waits — and commands in it
// are refused saying how to resume it, unless --resume; branched while
// paused (twice), it stays paused and its children run; a restarted daemon
// keeps it paused; a paused tree is killed. For both ways of branching RAM.
func TestPause(t *testing.T) {
	requireVMs(t)
	t.Run("clone", func(t *testing.T) { testPause(t, "VERS_RAM_POOL=on") })
	t.Run("copy", func(t *testing.T) { testPause(t, "VERS_RAM_DIR="+plainRAMDir(t)) })
}

// guestTime is what a VM says of itself: its uptime (its clock, which
// stops with its vCPUs) and its counter.
type guestTime struct {
	uptime  float64
	counter int
}

const guestTimeCmd = "cut -d' ' -f1 /proc/uptime; cat /tmp/counter"

func parseGuestTime(t *testing.T, out string) guestTime {
	t.Helper()
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("guest time: %q", out)
	}
	up, err1 := strconv.ParseFloat(f[0], 64)
	n, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("guest time: %q", out)
	}
	return guestTime{up, n}
}

func (p *project) guestTime(vm string, args ...string) guestTime {
	p.t.Helper()
	return parseGuestTime(p.t, p.must(append(append([]string{"execute"}, args...), vm, guestTimeCmd)...))
}

// stoodStill checks that vm's guest ran for less than host-stopped of the
// host time between a and b, and that its counter (one tick per 0.1 s of
// guest time at most) agrees with its clock.
func stoodStill(t *testing.T, what string, a, b guestTime, host, stopped time.Duration) {
	t.Helper()
	guest := time.Duration((b.uptime - a.uptime) * float64(time.Second))
	t.Logf("%s: host %.1fs, guest %.1fs, counter %d -> %d", what, host.Seconds(), guest.Seconds(), a.counter, b.counter)
	if guest > host-stopped {
		t.Errorf("%s: the guest's clock went on %.1fs of the host's %.1fs: it was not stopped for %s", what, guest.Seconds(), host.Seconds(), stopped)
	}
	if ticks := b.counter - a.counter; ticks < 0 || float64(ticks) > guest.Seconds()/0.1+2 {
		t.Errorf("%s: the counter went from %d to %d in %.1fs of guest time", what, a.counter, b.counter, guest.Seconds())
	}
}

func testPause(t *testing.T, ram string) {
	home := shortHome(t)
	p := newProject(t)
	p.env = []string{"VERS_HOME=" + home, ram}
	p.must("init")
	vm := uniqueAlias(t, "pz")
	p.must("run", "--vm-alias", vm)
	// The counter is replaced whole (renamed over), so it is never read empty.
	p.must("execute", "nohup bash -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &")
	waitFor(t, "the counter to start", 10*time.Second, func() bool { return p.counterNow(vm) > 3 })
	refused := "vers: conflict: vm " + vm + " is paused; `vers resume " + vm + "` runs it again, or pass --resume"

	// Paused for 2 s of the host's time: the guest's stand still.
	start, before := time.Now(), p.guestTime(vm)
	p.must("pause")
	if s, _ := p.find(vm); s.State != "paused" {
		t.Fatalf("status shows a paused VM as %q", s.State)
	}
	if r := p.vers("status", vm, "--format", "json"); !strings.Contains(r.out, `"state_reason":"paused by `+"`vers pause`"+`"`) {
		t.Errorf("status does not say why: %s", r.out)
	}
	time.Sleep(2 * time.Second)
	p.expect(255, refused, "execute", vm, "true")
	p.expect(4, "is paused; `vers resume "+vm+"`", "cp", ":/tmp/counter", "-")
	after := p.guestTime(vm, "--resume")
	stoodStill(t, "paused 2s", before, after, time.Since(start), 2*time.Second)
	if s, _ := p.find(vm); s.State != "running" {
		t.Fatalf("after --resume: %q", s.State)
	}
	waitFor(t, "the counter to go on", 10*time.Second, func() bool { return p.counter(vm) > after.counter+3 })

	// Branched while paused, twice, then the daemon restarted: it stays paused.
	start, before = time.Now(), p.guestTime(vm)
	p.must("pause", vm)
	for _, kid := range []string{vm + "-a", vm + "-b"} {
		p.branchPaused(vm, kid, before)
	}
	pid := homeDaemonPID(t, home)
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, "versd to stop", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	if s, _ := p.find(vm); s.State != "paused" {
		t.Fatalf("after a daemon restart: %q", s.State)
	}
	if homeDaemonPID(t, home) == pid {
		t.Fatal("the daemon did not restart")
	}
	time.Sleep(2 * time.Second)
	p.expect(255, refused, "execute", vm, "true")
	p.must("resume", vm)
	after = p.guestTime(vm)
	// The guest may run for a moment in the second branch (QEMU cannot
	// migrate a migrated VM again before it has run); not for seconds.
	stoodStill(t, "branched twice, daemon restarted", before, after, time.Since(start), 2*time.Second)
	waitFor(t, "the counter to go on", 10*time.Second, func() bool { return p.counter(vm) > after.counter+3 })

	// A paused tree is killed.
	p.must("pause", vm)
	p.must("pause", vm+"-a")
	p.must("kill", "-r", vm)
	if vms := p.status(); len(vms) != 0 {
		t.Fatalf("left after kill -r: %+v", vms)
	}
}

// branchPaused branches the paused vm into kid and checks that vm stays
// paused and kid runs from vm's paused state: kid's clock goes on from
// vm's as it was just before the pause (paused), so vm has not run since,
// however long ago it was paused.
func (p *project) branchPaused(vm, kid string, paused guestTime) {
	t := p.t
	t.Helper()
	start := time.Now()
	b := p.branch(vm, "--alias", kid)
	if b.Parent.State != "paused" || b.PauseMS != 0 {
		t.Fatalf("branch of a paused VM: parent %q, pause %.1f ms", b.Parent.State, b.PauseMS)
	}
	if s, _ := p.find(vm); s.State != "paused" {
		t.Fatalf("the parent is %q after a branch", s.State)
	}
	if s, _ := p.find(kid); s.State != "running" {
		t.Fatalf("the child is %q", s.State)
	}
	k := p.guestTime(kid)
	ran := time.Duration((k.uptime - paused.uptime) * float64(time.Second))
	if ran < 0 || ran > time.Since(start)+1500*time.Millisecond {
		t.Errorf("child %s's clock is %.1fs past the parent's before its pause, %.1fs after the branch began", kid, ran.Seconds(), time.Since(start).Seconds())
	}
	if ticks := k.counter - paused.counter; ticks < 0 || float64(ticks) > ran.Seconds()/0.1+2 {
		t.Errorf("child %s's counter %d is not from the paused parent's %d", kid, k.counter, paused.counter)
	}
	waitFor(t, "the child's counter to go on", 10*time.Second, func() bool { return p.counter(kid) > k.counter })
}
