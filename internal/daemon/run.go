package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/agent"
	"vers/internal/bearer"
	"vers/internal/buildid"
	"vers/internal/chunk"
	"vers/internal/config"
	"vers/internal/events"
	"vers/internal/fault"
	"vers/internal/image"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/rampool"
	"vers/internal/store"
	"vers/internal/ui"
	"vers/internal/vm"
)

// openChunks opens the store commits are kept in. Chunks a crash left
// half-written are found and removed before any write (internal/chunk).
func openChunks(ctx context.Context, layout paths.Layout, log *slog.Logger) (*chunk.Store, error) {
	dir, err := chunk.OpenDir(layout.ChunksDir())
	if err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	}
	s := chunk.New(dir)
	if n, err := s.Recover(ctx); err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	} else if n > 0 {
		log.Warn("removed chunks a crash left half-written", "chunks", n)
	}
	return s, nil
}

// Run is versd: it takes the host's daemon lock, recovers the VMs that
// survived a previous daemon, and serves the API on the owner-only unix
// socket (and, with cfg.Listen, over TCP to bearers of its token) until ctx
// ends. VMs keep running when it returns. ready, if not nil,
// is called once the socket accepts connections.
//
// What versd creates under VERS_HOME is private to its owner (the socket,
// database, lock, log and VM directories); VERS_HOME itself keeps the mode
// it was given, since it may be a directory that others use too.
func Run(ctx context.Context, cfg config.Daemon, log *slog.Logger, ready func()) error {
	layout, agentPath := cfg.Layout, cfg.Agent
	// An agent that is not static cannot be PID 1 in the guest's minimal root
	// filesystem: the kernel would panic at every boot. Refuse it here, where
	// the person who built it sees why, rather than at the first `vers run`.
	if err := buildid.CheckStatic(agentPath); err != nil {
		return fmt.Errorf("%w; build the agent static: %s", err, buildid.AgentBuildHint)
	}
	agentID, err := buildid.Of(agentPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(layout.VMsDir(), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(layout.PIDFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another versd already runs for %s", layout.Home)
	}
	lock.Truncate(0)
	fmt.Fprintf(lock, "%d\n", os.Getpid())

	// SQLite creates the database with the process umask, and its WAL and
	// shared-memory files with the database's mode: create it private first.
	if db, err := os.OpenFile(layout.Database(), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	} else {
		db.Close()
	}
	st, err := store.Open(ctx, layout.Database())
	if err != nil {
		return err
	}
	defer st.Close()
	store := image.New(layout.ImageDir, agentPath)
	store.UseMirror(cfg.Mirror)
	// One set of builds for the API and for the creates that need an image.
	images := NewImages(ctx, store)
	qemu.UseTools(qemu.Tools{QEMU: cfg.QEMU, Img: cfg.QEMUImg})
	fault.Enable(cfg.Failpoints...)
	accel := cfg.Accel
	if accel == "" {
		accel = qemu.DetectAccel()
	}
	pool, err := rampool.Ensure(ctx, cfg.RAMDir, cfg.RAMPoolDir, log)
	if err != nil {
		return err
	}
	commits, err := openChunks(ctx, layout, log)
	if err != nil {
		return err
	}
	vcfg := vm.Config{
		Chunks: commits,
		Layout: layout, Store: st, Images: images, Log: log,
		Hypervisor: vm.QEMU{}, Dial: agent.Dial, RAM: vm.RAMPool{}, Groups: vm.CgroupGroups{},
		Accel: accel, FixedLayout: fixedLayout(cfg.ExecASLR, accel),
		RAMDir: pool.Dir, CloneRAM: pool.Reflink,
		Host: vm.ReadHostLimits(layout.VMsDir()), BootTimeout: cfg.BootTimeout,
	}
	if pool.Reflink {
		vcfg.Returner = rampool.NewReturner(pool.Dir, log)
	}
	// The RAM directory is the host's: what a home deleted while its daemon
	// was down left in it, no daemon would ever recover.
	if gone := rampool.SweepOrphans(pool.Dir, log); len(gone) > 0 {
		for _, f := range gone {
			if id, ok := vm.VMOfRAMFile(f); ok {
				vcfg.Groups.Remove(id) // its block I/O group, empty now
			}
		}
		if vcfg.Returner != nil {
			vcfg.Returner.Kick()
		}
	}
	broker := events.New(events.DefaultBuffer)
	vcfg.Events = broker
	vms := vm.New(vcfg)
	if err := vms.Recover(ctx); err != nil {
		return fmt.Errorf("recover vms: %w", err)
	}
	go vms.Watch(ctx, 2*time.Second)
	go vms.PruneImages(ctx, store)

	api := New(vms, images, log)
	api.eventSrc = VMEvents{Broker: broker, VMs: vms}
	api.agent, api.agentID = agentPath, agentID
	return serve(ctx, layout, cfg.Listen, api, log, ready)
}

// serve answers the API on the owner-only unix socket, and on listen's TCP
// address when there is one (with the bearer token of layout.Token()), until
// ctx ends.
func serve(ctx context.Context, layout paths.Layout, listen config.Listen, api *Server, log *slog.Logger, ready func()) error {
	sock := layout.Socket()
	os.Remove(sock) // we hold the lock, so any socket file is stale
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return err
	}
	os.Chmod(sock, 0o600)
	h := api.Handler()
	servers := []*http.Server{{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{ln}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	api.ui = &uiFront{sessions: ui.NewSessions(nil), open: func() (string, error) {
		return api.openUI(ctx, layout.Token(), log)
	}}
	if listen.Addr != "" {
		tcp, token, err := listenTCP(listen, layout.Token(), log)
		if err != nil {
			ln.Close()
			return err
		}
		api.listen = listen.Addr
		if listen.Loopback {
			api.ui.addr = listen.Addr
		}
		servers = append(servers, &http.Server{Handler: api.guard(listen.Addr, listen.Loopback, token, log), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, tcp)
	}
	log.Info("versd listening", "socket", sock, "pid", os.Getpid(), "accel", api.vms.Accel(), "home", filepath.Clean(layout.Home))
	if ready != nil {
		ready()
	}
	return serveAll(ctx, servers, listeners)
}

// serveAll serves each listener with its server until ctx ends, or one of
// them fails; then all are shut down.
func serveAll(ctx context.Context, servers []*http.Server, listeners []net.Listener) error {
	errs := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errs <- srv.Serve(listeners[i]) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// listenTCP opens listen's address and the token requests to it must
// carry. The token itself is never logged, only where it is kept.
func listenTCP(listen config.Listen, tokenFile string, log *slog.Logger) (net.Listener, string, error) {
	token, err := bearer.Load(tokenFile)
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", listen.Addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w; give another address with --listen or VERS_LISTEN", listen.Addr, err)
	}
	if !listen.Loopback {
		log.Warn("SERVING THE VERS API TO THE NETWORK: whoever reaches this address with the token controls every VM and runs commands in them, "+
			"and the traffic is not encrypted; prefer 127.0.0.1 and an SSH tunnel", "addr", listen.Addr)
	}
	log.Info("versd listening on TCP; requests need the bearer token", "addr", listen.Addr, "token_file", tokenFile)
	return ln, token, nil
}

// fixedLayout says whether guests start programs without address-space
// randomization: as VERS_EXEC_ASLR says, else only under TCG. QEMU's TCG
// (7.2) keys the code it translates by guest virtual address, so a program
// loaded at a new random address is translated afresh: /bin/true costs a
// TCG guest 44-57 ms randomized and 13 ms at fixed addresses. KVM runs the
// guest's code as it is, and keeps randomization.
func fixedLayout(aslr, accel string) bool {
	switch aslr {
	case "on":
		return false
	case "off":
		return true
	}
	return accel == "tcg"
}
