package qemu

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/poll"
)

// ourPassts lists the live passt processes this test process started
// (passt is its starter's child while the starter lives).
func ourPassts(t *testing.T) []int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !Alive(pid) {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		if strings.Contains(string(b), "Name:\tpasst") && strings.Contains(string(b), "\nPPid:\t"+strconv.Itoa(os.Getpid())+"\n") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func expectNoPasst(t *testing.T, cfg Config, when string) {
	t.Helper()
	if pids := ourPassts(t); len(pids) > 0 {
		t.Errorf("%s: passt still running: %v", when, pids)
	}
	if _, err := os.Stat(cfg.PasstPIDFile()); err == nil {
		t.Errorf("%s: %s left", when, cfg.PasstPIDFile())
	}
}

// An isolated VM gets a passt of its own before QEMU runs, connected to
// QEMU's network device; stopping the VM ends it.
func TestNetworkIsolatedStop(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	np := inst.NetPID()
	if pids := ourPassts(t); np == 0 || len(pids) != 1 || pids[0] != np {
		t.Fatalf("NetPID %d; passt processes started: %v", np, pids)
	}
	if got, err := PasstPIDOf(cfg); err != nil || got != np {
		t.Fatalf("PasstPIDOf = %d, %v; want %d", got, err, np)
	}
	// Like QEMU, it is in a session of its own.
	mySID, _ := unix.Getsid(0)
	if sid, _ := unix.Getsid(np); sid == mySID {
		t.Errorf("passt %d shares the test process' session", np)
	}
	// QEMU's network device is on the stream, connected to a unix socket
	// (one without a path: the pair). QEMU names the peer once its stream
	// has seen the connection, which on a loaded host can come a moment
	// after QMP answers.
	var out string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		if err := inst.Execute(ctx, "human-monitor-command", map[string]string{"command-line": "info network"}, &out); err != nil {
			return false, err
		}
		return strings.Contains(out, "nic0") && strings.Contains(out, "type=stream,unix:"), nil
	})
	t.Logf("info network:\n%s", out)
	if err != nil {
		t.Errorf("network device not on a connected stream (%v):\n%s", err, out)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, np)
	expectNoPasst(t, cfg, "after Stop")
}

// passt ends by itself when its QEMU dies, however it dies; Kill then
// leaves nothing.
func TestNetworkEndsWithQEMU(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	np := inst.NetPID()
	inst.Close()
	if err := unix.Kill(inst.PID(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, inst.PID())
	waitGone(t, np)
	if err := Kill(cfg); err != nil {
		t.Fatal(err)
	}
	expectNoPasst(t, cfg, "after kill -9 of QEMU and Kill")
}

// A restarted daemon finds a VM's passt again, and Kill, given only the
// VM's name and directory as a sweep has them, ends both.
func TestNetworkAttachAndKill(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	inst := startTest(t, cfg)
	np := inst.NetPID()
	inst.Close()
	again, err := Attach(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.NetPID() != np {
		t.Errorf("Attach found passt %d, want %d", again.NetPID(), np)
	}
	again.Close()
	if err := Kill(Config{Name: cfg.Name, Dir: cfg.Dir}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, inst.PID())
	waitGone(t, np)
	expectNoPasst(t, cfg, "after Kill")
}

// A passt left by a start that died before its QEMU ran is killed by Kill
// (the sweep of a VM directory) and by the next Start.
func TestNetworkLeftoverPasst(t *testing.T) {
	needQEMU(t)
	for _, by := range []string{"Kill", "Start"} {
		t.Run(by, func(t *testing.T) {
			cfg := testConfig(t)
			if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
				t.Fatal(err)
			}
			end, err := startPasst(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { end.Close(); killPasst(cfg) })
			left, err := PasstPIDOf(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if by == "Kill" {
				if err := Kill(cfg); err != nil {
					t.Fatal(err)
				}
				waitGone(t, left)
				expectNoPasst(t, cfg, "after Kill")
				return
			}
			inst := startTest(t, cfg)
			waitGone(t, left)
			if np, _ := PasstPIDOf(cfg); np == left || np != inst.NetPID() || len(ourPassts(t)) != 1 {
				t.Errorf("NetPID %d, pidfile %d, after a leftover %d; running: %v", inst.NetPID(), np, left, ourPassts(t))
			}
		})
	}
}

// A failed start leaves no passt.
func TestNetworkStartFailure(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t)
	cfg.Disk = cfg.Dir + "/missing.qcow2"
	if _, err := Start(context.Background(), cfg); err == nil {
		Kill(cfg)
		t.Fatal("Start with a missing disk succeeded")
	}
	expectNoPasst(t, cfg, "after a failed Start")
}

// A VM without a network, and a holder with an unplugged one, have no passt.
func TestNetworkWithoutPasst(t *testing.T) {
	needQEMU(t)
	for _, mode := range []NetMode{NetNone, NetUnplugged} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Network = mode
			inst := startTest(t, cfg)
			if np := inst.NetPID(); np != 0 {
				t.Errorf("NetPID = %d, want 0", np)
			}
			expectNoPasst(t, cfg, "running")
			var out string
			if err := inst.Execute(context.Background(), "human-monitor-command", map[string]string{"command-line": "info network"}, &out); err != nil {
				t.Fatal(err)
			}
			hasNIC := strings.Contains(out, "nic0")
			if hasNIC != (mode == NetUnplugged) {
				t.Errorf("info network for %s:\n%s", mode, out)
			}
			if err := inst.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
