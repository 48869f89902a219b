package vm

import (
	"errors"
	"math"
	"os"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

// TestInfo: a VM's info names its children, its accelerator and network,
// the PSS of its process, its own disk layer and chain, and the pause of
// its last branch; a sleeping VM has no process; an unknown VM is not found.
func TestInfo(t *testing.T) {
	e := newEnv(t, true)
	pids := map[int]bool{}
	e.m.pss = func(pid int) (int64, error) { pids[pid] = true; return 42 << 20, nil }
	root := e.create("root")

	info, err := e.m.Info(e.ctx(), "root")
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != root.ID || info.State != api.StateRunning || info.Accel != "tcg" || info.Network != "isolated" {
		t.Fatalf("info: %+v", info)
	}
	if info.Memory.PSSBytes != 42<<20 || !pids[e.hv.inst(root.ID).PID()] {
		t.Fatalf("pss %d of pids %v", info.Memory.PSSBytes, pids)
	}
	if info.Disk.Overlay == "" || info.Disk.ChainLength != 2 || info.LastPause != nil || len(info.Children) != 0 {
		t.Fatalf("before a branch: disk %+v, pause %+v, children %v", info.Disk, info.LastPause, info.Children)
	}
	if st, err := os.Stat(info.Disk.Overlay); err != nil || info.Disk.OverlayBytes != allocated(info.Disk.Overlay) || st.Size() == 0 {
		t.Fatalf("overlay %s: %v, %d bytes", info.Disk.Overlay, err, info.Disk.OverlayBytes)
	}
	// The fake guest's agent runs on this host's clock: no offset beyond
	// the round trip.
	if c := info.Clock; c == nil || c.RTTMillis <= 0 || math.Abs(c.OffsetMillis) > c.RTTMillis/2+1 {
		t.Fatalf("clock %+v", info.Clock)
	}

	res, err := e.m.Branch(e.ctx(), "root", "kid", 1)
	if err != nil {
		t.Fatal(err)
	}
	info, err = e.m.Info(e.ctx(), "root")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Children) != 1 || info.Children[0] != res.Children[0].ID {
		t.Fatalf("children %v, branched %s", info.Children, res.Children[0].ID)
	}
	if info.LastPause == nil || info.LastPause.Op != "branch" || info.Disk.ChainLength != 3 {
		t.Fatalf("after a branch: pause %+v, chain %d", info.LastPause, info.Disk.ChainLength)
	}
	if b := info.LastBranch; b == nil || len(b.Children) != 1 || b.Children[0] != res.Children[0].ID ||
		b.AllReadyMillis != res.AllReady.Milliseconds() || b.FirstReadyMillis != res.FirstReady.Milliseconds() || b.PauseMillis != info.LastPause.PauseMillis {
		t.Fatalf("last branch %+v, branched %+v", b, res)
	}
	kid, err := e.m.Info(e.ctx(), "kid")
	if err != nil {
		t.Fatal(err)
	}
	if kid.ParentID != root.ID || kid.Disk.ChainLength != 3 || kid.LastPause != nil || kid.LastBranch != nil {
		t.Fatalf("child: %+v", kid)
	}

	if _, err := e.m.Sleep(e.ctx(), "kid"); err != nil {
		t.Fatal(err)
	}
	clear(pids)
	kid, err = e.m.Info(e.ctx(), "kid")
	if err != nil || kid.State != api.StateSleeping || kid.Memory.PSSBytes != 0 || len(pids) != 0 || kid.Clock != nil {
		t.Fatalf("sleeping child: %+v, %v, pss read of %v", kid, err, pids)
	}

	if _, err := e.m.Info(e.ctx(), "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("info of no VM: %v", err)
	}
}

func TestParsePSS(t *testing.T) {
	in := "55d0c0000000-7ffd [rollup]\nRss:              204800 kB\nPss:              102400 kB\nPss_Anon:  1 kB\n"
	if n, err := parsePSS([]byte(in)); err != nil || n != 102400*1024 {
		t.Fatalf("parse: %d %v", n, err)
	}
	if _, err := parsePSS([]byte("Rss: 1 kB\n")); err == nil {
		t.Fatal("no Pss line: no error")
	}
}

// TestConsole: a VM's console log is read from its end, at most the bytes
// asked for; a count out of range and an unknown VM are refused.
func TestConsole(t *testing.T) {
	e := newEnv(t, true)
	root := e.create("root")
	row, err := e.m.store.ResolveVM(e.ctx(), root.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := e.m.currentMachine(row)
	if err := os.WriteFile(cfg.SerialLog(), []byte("[    0.000000] Linux version 6.1\nvers-agent: ready\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := e.m.Console(e.ctx(), "root", 18)
	if err != nil || string(b) != "vers-agent: ready\n" {
		t.Fatalf("the console's end: %q %v", b, err)
	}
	for _, n := range []int64{0, -1, ConsoleMax + 1} {
		if _, err := e.m.Console(e.ctx(), "root", n); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%d bytes: %v, want invalid", n, err)
		}
	}
	if _, err := e.m.Console(e.ctx(), "nope", 10); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("console of no VM: %v", err)
	}
}
