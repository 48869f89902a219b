package vm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/chunk"
	"vers/internal/image"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/store"
)

// The fakes behind the ports: a hypervisor whose "processes" are records
// with a real guest agent each (an in-process agent server on the VM's
// agent socket, running commands on the test host), RAM files copied
// instead of cloned, and images that are two small files. A test turns any
// step into a failure with fail(op) or env.manager's failpoints.

type fakeHV struct {
	mu      sync.Mutex
	nextPID int
	procs   map[string]*fakeInst // running, by machine name
	fails   map[string]error     // op → error (e.g. "Start:child", "Pause")
	calls   []string
	// exitOnStart makes the next Start's process exit at once (a guest that
	// panics while booting).
	exitOnStart bool
	// onStart, when set, runs at each Start, outside the lock.
	onStart func(cfg qemu.Config)
}

func newFakeHV() *fakeHV {
	return &fakeHV{nextPID: 1000, procs: map[string]*fakeInst{}, fails: map[string]error{}}
}

// op records a call and returns the failure set for it, if any. Keys are
// "Op" or "Op:kind", kind being parent, child or holder.
func (h *fakeHV) op(ctx context.Context, name, kind string) error {
	h.mu.Lock()
	h.calls = append(h.calls, name+":"+kind)
	err := h.fails[name+":"+kind]
	if err == nil {
		err = h.fails[name]
	}
	h.mu.Unlock()
	return err
}

func (h *fakeHV) fail(op string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.fails, op)
		return
	}
	h.fails[op] = err
}

func (h *fakeHV) called(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func kindOf(cfg qemu.Config) string {
	switch {
	case strings.HasPrefix(cfg.Name, "snap-"):
		return "holder"
	case cfg.Incoming:
		return "child"
	}
	return "parent"
}

func (h *fakeHV) Start(ctx context.Context, cfg qemu.Config) (Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := h.op(ctx, "Start", kindOf(cfg)); err != nil {
		return nil, err
	}
	if h.onStart != nil {
		h.onStart(cfg)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.procs[cfg.Name]; ok {
		return nil, fmt.Errorf("start vm %s: %w", cfg.Name, qemu.ErrRunning)
	}
	h.nextPID++
	in := &fakeInst{hv: h, cfg: cfg, pid: h.nextPID, status: "running", gone: make(chan struct{})}
	if cfg.Incoming {
		in.status = "inmigrate"
	}
	if cfg.Frozen {
		in.status = "prelaunch"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	if cfg.MemPath != "" && !cfg.MemPrivate {
		// As QEMU does: a RAM file that is not there is made, empty.
		if f, err := os.OpenFile(cfg.MemPath, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			f.Close()
		}
	}
	if h.exitOnStart {
		h.exitOnStart = false
		in.exited = true
	} else if kindOf(cfg) != "holder" {
		if err := in.serveAgent(); err != nil {
			return nil, err
		}
	}
	h.procs[cfg.Name] = in
	return in, nil
}

func (h *fakeHV) Attach(ctx context.Context, cfg qemu.Config) (Instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in, ok := h.procs[cfg.Name]
	if !ok || in.exited {
		return nil, fmt.Errorf("attach %s: %w", cfg.Name, qemu.ErrNotRunning)
	}
	in.mu.Lock()
	in.closed = false
	in.cfg = cfg // what the daemon recorded, as the real Attach takes it
	in.mu.Unlock()
	return in, nil
}

func (h *fakeHV) Kill(cfg qemu.Config) error {
	h.mu.Lock()
	h.calls = append(h.calls, "Kill:"+kindOf(cfg))
	in := h.procs[cfg.Name]
	delete(h.procs, cfg.Name)
	h.mu.Unlock()
	if in != nil {
		in.exit()
	}
	return nil
}

func (h *fakeHV) Available(qemu.NetMode) error { return nil }

func (h *fakeHV) RotateLogs(cfg qemu.Config) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "RotateLogs:"+kindOf(cfg))
	return nil
}

func (h *fakeHV) CreateOverlay(ctx context.Context, backing, backingFmt, path string, sizeMiB int) error {
	if err := h.op(ctx, "CreateOverlay", ""); err != nil {
		return err
	}
	if _, err := os.Stat(backing); err != nil {
		return fmt.Errorf("overlay of %s: %w", backing, err)
	}
	return os.WriteFile(path, []byte(fakeOverlay+backing), 0o600)
}

func (h *fakeHV) CreateBlank(ctx context.Context, path string, sizeMiB int) error {
	return os.WriteFile(path, []byte("blank"), 0o600)
}

// A fake overlay is a file that says "qcow2 over BACKING"; anything else is raw.
const fakeOverlay = "qcow2 over "

func (h *fakeHV) Backing(path string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	backing, ok := strings.CutPrefix(string(b), fakeOverlay)
	if !ok {
		return "", "", nil
	}
	format, err := h.Format(backing)
	return backing, format, err
}

func (h *fakeHV) Format(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(string(b), fakeOverlay) {
		return "qcow2", nil
	}
	return "raw", nil
}

func (h *fakeHV) Rebase(ctx context.Context, path, backing, format string) error {
	if err := h.op(ctx, "Rebase", ""); err != nil {
		return err
	}
	os.Chmod(path, 0o600)
	return os.WriteFile(path, []byte(fakeOverlay+backing), 0o600)
}

// running lists the names of the processes that run.
func (h *fakeHV) running() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, in := range h.procs {
		if !in.isExited() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (h *fakeHV) inst(name string) *fakeInst {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.procs[name]
}

type fakeInst struct {
	hv  *fakeHV
	pid int

	mu     sync.Mutex
	cfg    qemu.Config
	status string
	exited bool
	closed bool
	ln     net.Listener
	cancel context.CancelFunc
	srvWG  sync.WaitGroup
	// hung makes every call block until its context ends or the process
	// is killed, as a stopped QEMU does.
	hung bool
	gone chan struct{}
	// active is the disk file QEMU writes to, once SwitchDisk moved it,
	// top its node; nodes the overlays AddOverlay opened that no switch
	// used yet, by node name.
	active, top string
	nodes       map[string]string
	reason      string
	// mode is what the next migration carries (SetRAMMode).
	mode qemu.RAMMode
	// ran counts the times the guest was made to run (Cont, or a
	// background snapshot resuming it).
	ran int
}

// serveAgent runs a real guest agent behind the VM's agent socket.
func (in *fakeInst) serveAgent() error {
	ln, err := net.Listen("unix", in.cfg.AgentSocket())
	if err != nil {
		return err
	}
	srv := agent.NewServer(agent.ServerConfig{System: nopSystem{}, HomeDir: in.cfg.Dir})
	srv.Ready()
	ctx, cancel := context.WithCancel(context.Background())
	in.ln, in.cancel = ln, cancel
	in.srvWG.Add(1)
	go func() {
		defer in.srvWG.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			in.srvWG.Add(1)
			go func() {
				defer in.srvWG.Done()
				srv.ServeConn(ctx, conn)
				conn.Close()
			}()
		}
	}()
	return nil
}

func (in *fakeInst) exit() {
	in.mu.Lock()
	if in.exited && in.ln == nil {
		in.mu.Unlock()
		return
	}
	if !in.exited {
		close(in.gone)
	}
	in.exited = true
	ln, cancel := in.ln, in.cancel
	in.ln = nil
	in.mu.Unlock()
	if ln != nil {
		ln.Close()
		cancel()
		in.srvWG.Wait()
	}
	os.Remove(in.cfg.AgentSocket())
}

func (in *fakeInst) isExited() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exited
}

func (in *fakeInst) kind() string { return kindOf(in.Config()) }

func (in *fakeInst) do(ctx context.Context, op string) error {
	if in.isExited() {
		return fmt.Errorf("%s: %w", op, qemu.ErrDisconnected)
	}
	in.mu.Lock()
	hung := in.hung
	in.mu.Unlock()
	if hung {
		in.hv.op(ctx, op, in.kind())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", op, qemu.ErrUnresponsive)
		case <-in.gone:
			return fmt.Errorf("%s: %w", op, qemu.ErrDisconnected)
		}
	}
	return in.hv.op(ctx, op, in.kind())
}

func (in *fakeInst) setHung(on bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.hung = on
}

func (in *fakeInst) setStatus(s string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status = s
}

func (in *fakeInst) PID() int { return in.pid }
func (in *fakeInst) Config() qemu.Config {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cfg
}
func (in *fakeInst) SetConfig(c qemu.Config) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cfg = c
}
func (in *fakeInst) Exited() bool { return in.isExited() }
func (in *fakeInst) ShutdownReason() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.reason
}

// reboot ends the process as a guest reboot does under -no-reboot.
func (in *fakeInst) reboot() {
	in.mu.Lock()
	in.reason = "guest-reset"
	in.mu.Unlock()
	in.hv.mu.Lock()
	delete(in.hv.procs, in.Config().Name)
	in.hv.mu.Unlock()
	in.exit()
}
func (in *fakeInst) Status(ctx context.Context) (string, error) {
	if err := in.do(ctx, "Status"); err != nil {
		return "", err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status, nil
}

// Pause stops a running guest; as QEMU's stop, it leaves any other state
// (io-error, postmigrate) as it is.
func (in *fakeInst) Pause(ctx context.Context) error {
	if err := in.do(ctx, "Pause"); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.status == "running" {
		in.status = "paused"
	}
	return nil
}
func (in *fakeInst) Cont(ctx context.Context) error {
	if err := in.do(ctx, "Cont"); err != nil {
		return err
	}
	in.run()
	return nil
}

func (in *fakeInst) run() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status = "running"
	in.ran++
}

func (in *fakeInst) runs() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.ran
}

func (in *fakeInst) getStatus() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status
}

// migrating starts a migration out of the VM as QEMU 7.2 does: refused from
// postmigrate (a VM migrated while stopped must run before it migrates again).
func (in *fakeInst) migrating(op string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.status == "postmigrate" {
		return fmt.Errorf("%s: Can't migrate the vm that was paused due to previous migration", op)
	}
	return nil
}
func (in *fakeInst) Stop(ctx context.Context) error {
	in.hv.mu.Lock()
	delete(in.hv.procs, in.Config().Name)
	in.hv.mu.Unlock()
	in.exit()
	return nil
}
func (in *fakeInst) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	return nil
}
func (in *fakeInst) AddOverlay(ctx context.Context, overlay, node string) (string, error) {
	if err := in.do(ctx, "AddOverlay"); err != nil {
		return "", err
	}
	if _, err := os.Stat(overlay); err != nil {
		return "", err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.nodes == nil {
		in.nodes = map[string]string{}
	}
	if _, dup := in.nodes[node]; dup {
		return "", fmt.Errorf("duplicate node name %s", node)
	}
	in.nodes[node] = overlay
	top := in.top
	if top == "" {
		top = "root"
	}
	return top, nil
}
func (in *fakeInst) openNodes() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.nodes)
}
func (in *fakeInst) DropOverlay(ctx context.Context, node string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.nodes, node)
	return nil
}
func (in *fakeInst) SwitchDisk(ctx context.Context, top, node string) error {
	if err := in.do(ctx, "SwitchDisk"); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	overlay, ok := in.nodes[node]
	if !ok {
		return fmt.Errorf("no node %s", node)
	}
	if cur := in.top; top != cur && !(cur == "" && top == "root") {
		return fmt.Errorf("node %s is not the top (%q)", top, cur)
	}
	in.active, in.top = overlay, node // what QEMU reports as its active disk from now on
	delete(in.nodes, node)            // in use now
	return nil
}
func (in *fakeInst) ActiveDisk(ctx context.Context) (string, error) {
	if err := in.do(ctx, "ActiveDisk"); err != nil {
		return "", err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.active != "" {
		return in.active, nil
	}
	return in.cfg.Disk, nil
}
func (in *fakeInst) SetRAMMode(ctx context.Context, mode qemu.RAMMode) error {
	if err := in.do(ctx, "SetRAMMode"); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.mode = mode
	return nil
}

// SaveState leaves the VM as it was, as QEMU's device-state save does.
func (in *fakeInst) SaveState(ctx context.Context, path string) error {
	if err := in.do(ctx, "SaveState"); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("device state of "+in.Config().Name), 0o600)
}
func (in *fakeInst) LoadState(ctx context.Context, path string) error {
	if err := in.do(ctx, "LoadState"); err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	in.setStatus("paused")
	return nil
}
func (in *fakeInst) ListenRAM(ctx context.Context, uri string) error { return in.do(ctx, "ListenRAM") }
func (in *fakeInst) SendRAM(ctx context.Context, uri string) error {
	if err := in.do(ctx, "SendRAM"); err != nil {
		return err
	}
	if err := in.migrating("SendRAM"); err != nil {
		return err
	}
	in.mu.Lock()
	background := in.mode == qemu.RAMBackground
	in.mu.Unlock()
	if background {
		// QEMU 7.2's background snapshot resumes the guest itself, whether
		// or not it ran before.
		in.run()
	}
	return nil
}
func (in *fakeInst) WaitRAMSent(ctx context.Context) (qemu.Migration, error) {
	if err := in.do(ctx, "WaitRAMSent"); err != nil {
		return qemu.Migration{}, err
	}
	// The holder now has the RAM as it was at the stop.
	holder := in.hv.holderOf(in)
	if holder != nil {
		src := in.Config().MemPath
		if src == "" {
			os.WriteFile(holder.Config().MemPath, []byte("anonymous RAM of "+in.Config().Name), 0o600)
		} else if err := copyFile(src, holder.Config().MemPath); err != nil {
			return qemu.Migration{}, err
		}
		holder.setStatus("paused")
	}
	in.mu.Lock()
	if in.mode != qemu.RAMBackground && in.status == "paused" {
		in.status = "postmigrate"
	}
	in.mu.Unlock()
	return qemu.Migration{Status: "completed"}, nil
}
func (in *fakeInst) CancelMigration(ctx context.Context)   { in.hv.op(ctx, "CancelMigration", in.kind()) }
func (in *fakeInst) WaitRunning(ctx context.Context) error { return in.do(ctx, "WaitRunning") }
func (in *fakeInst) WaitLoaded(ctx context.Context) error  { return in.do(ctx, "WaitLoaded") }

// holderOf finds the holder QEMU that receives parent's RAM.
func (h *fakeHV) holderOf(parent *fakeInst) *fakeInst {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.procs {
		if kindOf(p.Config()) == "holder" && !p.isExited() {
			return p
		}
	}
	return nil
}

type nopSystem struct{}

func (nopSystem) SetTime(time.Time) error   { return nil }
func (nopSystem) AddEntropy([]byte) error   { return nil }
func (nopSystem) SetHostname(string) error  { return nil }
func (nopSystem) SetMachineID(string) error { return nil }
func (nopSystem) ResetTCP() (int, error)    { return 0, nil }

// fakeImages serves a kernel and a root filesystem made of small files.
type fakeImages struct{ dir string }

func (f fakeImages) Ensure(ctx context.Context, name string, progress io.Writer) (image.Info, error) {
	switch name {
	case "default.bin":
		p := filepath.Join(f.dir, "vmlinux")
		os.WriteFile(p, []byte("kernel"), 0o644)
		return image.Info{Name: name, Kind: image.KindKernel, Path: p}, nil
	case "default":
		p := filepath.Join(f.dir, "rootfs.ext4")
		os.WriteFile(p, []byte("rootfs"), 0o644)
		return image.Info{Name: name, Kind: image.KindRootfs, Path: p, SizeMiB: 100}, nil
	}
	return image.Info{}, fmt.Errorf("%q: %w", name, image.ErrUnknown)
}

func (f fakeImages) Get(name string) (image.Info, error) {
	return f.Ensure(context.Background(), name, nil)
}
func (f fakeImages) Names() []string { return []string{"default.bin", "default"} }

type nopGroups struct{}

func (nopGroups) Place(string, int) error { return nil }
func (nopGroups) Remove(string) error     { return nil }

// env is a manager on fakes, in a directory of its own.
type env struct {
	t     *testing.T
	m     *Manager
	hv    *fakeHV
	ram   *fakeRAM
	st    *store.Store
	home  string
	ramd  string
	fails map[string]bool
	dials int
	dmu   sync.Mutex
	free  int // MiB free where disks live
	ev    *recEvents
}

// newEnv makes a manager whose RAM is cloned (clone) or copied.
func newEnv(t *testing.T, clone bool) *env {
	t.Helper()
	home, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hv: newFakeHV(), ram: &fakeRAM{fails: map[string]error{}}, home: home,
		ramd: filepath.Join(home, "ram"), fails: map[string]bool{}, free: 100_000, ev: &recEvents{}}
	st, err := store.Open(context.Background(), filepath.Join(home, "vers.db"))
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	imgs := filepath.Join(home, "img")
	os.MkdirAll(imgs, 0o700)
	layout := paths.Layout{Home: home, ImageDir: imgs}
	host := HostLimits{MemMiB: 24576, CPUs: 4, Available: func() int { return 20000 }}
	host.freeDisk = func() int { return e.free }
	chunks, err := chunk.OpenDir(filepath.Join(home, "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	e.m = New(Config{
		Chunks: chunk.New(chunks),
		Layout: layout, Store: st, Images: fakeImages{imgs}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hypervisor: e.hv, Dial: e.dial, RAM: e.ram, Groups: nopGroups{},
		Accel: "tcg", RAMDir: e.ramd, CloneRAM: clone, Host: host, BootTimeout: 5 * time.Second,
		Events: e.ev,
	})
	e.m.failpoint = func(p string) error {
		e.dmu.Lock()
		defer e.dmu.Unlock()
		if e.fails[p] {
			return fmt.Errorf("injected failure at %s", p)
		}
		return nil
	}
	t.Cleanup(func() {
		for _, name := range e.hv.running() {
			if in := e.hv.inst(name); in != nil {
				in.exit()
			}
		}
		e.m.mu.Lock()
		for _, mc := range e.m.live {
			mc.closeAgent()
		}
		e.m.mu.Unlock()
		st.Close()
		os.RemoveAll(home)
	})
	return e
}

func (e *env) dial(ctx context.Context, sock string) (*agent.Client, error) {
	e.dmu.Lock()
	e.dials++
	e.dmu.Unlock()
	return agent.Dial(ctx, sock)
}

func (e *env) failAt(point string, on bool) {
	e.dmu.Lock()
	defer e.dmu.Unlock()
	e.fails[point] = on
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) create(alias string) api.VM {
	e.t.Helper()
	v, err := e.m.Create(e.ctx(), Spec{Alias: alias, MemMiB: 512, VCPUs: 1, FsMiB: 1024, Kernel: "default.bin", Rootfs: "default"})
	if err != nil {
		e.t.Fatalf("create %s: %v", alias, err)
	}
	return v
}

// files lists every file under the home and the RAM directory, relative.
func (e *env) files() []string {
	var out []string
	filepath.Walk(e.home, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(e.home, p)
			if !strings.HasPrefix(rel, "vers.db") && !strings.HasPrefix(rel, "img/") && !strings.HasPrefix(rel, "failed/") && !strings.HasPrefix(rel, "chunks/") {
				out = append(out, rel)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func (e *env) vms() []store.VM {
	e.t.Helper()
	vms, err := e.st.ListVMs(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return vms
}

func (e *env) snapshots() []store.Snapshot {
	e.t.Helper()
	sn, err := e.st.ListSnapshots(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return sn
}
