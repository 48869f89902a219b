package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"
)

// System is what a sync request changes in the guest outside the agent.
// LinuxSystem is the real one; tests record the calls instead of moving the
// clock of the machine that runs them.
type System interface {
	SetTime(t time.Time) error
	AddEntropy(b []byte) error
	SetHostname(name string) error
	SetMachineID(id string) error
	// ResetTCP resets every TCP connection to another machine and says
	// how many it reset.
	ResetTCP() (int, error)
}

// ServerConfig configures a guest server.
type ServerConfig struct {
	// System applies sync requests. Nil refuses them.
	System System
	// Reaper, when set, is the only place children are waited for (PID 1).
	// Nil waits for each started process directly.
	Reaper *Reaper
	// Logf receives one line per notable event. Nil discards.
	Logf func(format string, args ...any)
	// HomeDir is the default working directory and HOME (default /root).
	HomeDir string
	// Journal, when set, is the root filesystem's change journal.
	Journal *Journal
}

// Server is the guest end of the channel. One Server outlives any number of
// host sessions.
type Server struct {
	cfg       ServerConfig
	ready     chan struct{}
	readyOnce sync.Once
}

// NewServer returns a server whose Info waits until Ready is called.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.HomeDir == "" {
		cfg.HomeDir = "/root"
	}
	return &Server{cfg: cfg, ready: make(chan struct{})}
}

// Ready marks the guest as fully up (root mounted, network configured).
func (s *Server) Ready() { s.readyOnce.Do(func() { close(s.ready) }) }

// headerTimeout bounds how long a new stream may take to send its header.
const headerTimeout = 10 * time.Second

// drainTimeout bounds how long a session's processes may take to die after
// the session ended, before the next session is served anyway.
const drainTimeout = 3 * time.Second

// ServeConn serves one host session over conn, a connection of its own
// (a unix socket, stdio), until the host goes away or ctx ends. The session
// begins after the host's mark. Processes started in the session are
// killed when it ends.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	return s.serveSession(ctx, newMarkedConn(conn))
}

// serveSession serves one host session on conn, whose first byte is the
// session's.
func (s *Server) serveSession(ctx context.Context, conn io.ReadWriteCloser) error {
	ys, err := yamux.Server(conn, muxConfig())
	if err != nil {
		return err
	}
	sess := &session{srv: s, done: ys.CloseChan(), pending: map[string]*rendezvous{}}
	stop := context.AfterFunc(ctx, func() { ys.Close() })
	defer stop()
	var wg sync.WaitGroup
	for {
		st, err := ys.AcceptStream()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess.handle(st)
		}()
	}
	ys.Close()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(drainTimeout):
		s.cfg.Logf("session ended with handlers still running")
	}
	return ctx.Err()
}

// session is the state of one host session.
type session struct {
	srv     *Server
	done    <-chan struct{}
	mu      sync.Mutex
	pending map[string]*rendezvous
}

func (sess *session) handle(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	var req request
	if err := readMsg(st, &req); err != nil {
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	if req.Op == opStdio {
		// The exec handler owns the stream from now on and closes it.
		if req.FD < 0 || req.FD > 2 || !sess.deposit(req.ID, req.FD, st) {
			st.Close()
		}
		return
	}
	defer st.Close()
	s := sess.srv
	switch req.Op {
	case opHello:
		writeMsg(st, reply{Version: Version})
	case opInfo:
		select {
		case <-s.ready:
		case <-sess.done:
			return
		}
		info, err := readInfo()
		writeMsg(st, replyFor(err, reply{Info: &info}))
	case opSync:
		// Like info, it waits for the guest to be up: the host's first
		// request to a booting guest. The clock it brings is moved on by
		// that wait.
		received := time.Now()
		select {
		case <-s.ready:
		case <-sess.done:
			return
		}
		if req.Sync != nil && !req.Sync.Time.IsZero() {
			req.Sync.Time = req.Sync.Time.Add(time.Since(received))
		}
		err := s.sync(req.Sync)
		now := time.Now()
		writeMsg(st, replyFor(err, reply{Clock: &now}))
	case opRead:
		s.readFile(st, req.Path)
	case opWrite:
		s.writeFile(st, req.Path, req.Mode)
	case opReadTree:
		s.readTree(st, req.Path)
	case opWriteTree:
		s.writeTree(st, req.Path, req.Name)
	case opExec:
		s.exec(sess, st, req)
	case opManifest:
		s.manifest(st, req.Manifest)
	case opHash:
		s.hashPaths(st, req.Paths)
	case opJournal:
		s.journal(st)
	case opDial:
		s.dial(st, req.Addr)
	default:
		writeMsg(st, reply{Error: "unknown operation " + strconv.Quote(req.Op), Code: codeInvalid})
	}
}

// replyFor turns err into an error reply, or returns ok.
func replyFor(err error, ok reply) reply {
	if err == nil {
		return ok
	}
	r := reply{Error: err.Error()}
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.Code = codeNotFound
	case errors.Is(err, ErrInvalid):
		r.Code, r.Error = codeInvalid, strings.TrimSuffix(r.Error, ": "+ErrInvalid.Error())
	case errors.Is(err, ErrNoSpace):
		r.Code, r.Error = codeNoSpace, strings.TrimSuffix(r.Error, ": "+ErrNoSpace.Error())
	}
	return r
}

func (s *Server) sync(r *SyncRequest) error {
	if r == nil {
		return fmt.Errorf("sync without parameters: %w", ErrInvalid)
	}
	if s.cfg.System == nil {
		return errors.New("sync is not available in this agent")
	}
	// Before anything this sync changes: the new segment holds it.
	if r.Epoch != "" && s.cfg.Journal != nil {
		s.cfg.Journal.Mark(r.Epoch)
	}
	if !r.Time.IsZero() {
		if err := s.cfg.System.SetTime(r.Time); err != nil {
			return fmt.Errorf("set time: %w", err)
		}
	}
	if r.Adjust != 0 {
		if err := s.cfg.System.SetTime(time.Now().Add(r.Adjust)); err != nil {
			return fmt.Errorf("adjust time: %w", err)
		}
	}
	if len(r.Entropy) > 0 {
		if err := s.cfg.System.AddEntropy(r.Entropy); err != nil {
			return fmt.Errorf("add entropy: %w", err)
		}
	}
	if r.Hostname != "" {
		if err := s.cfg.System.SetHostname(r.Hostname); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if r.MachineID != "" {
		if err := s.cfg.System.SetMachineID(r.MachineID); err != nil {
			return fmt.Errorf("set machine id: %w", err)
		}
	}
	reset := 0
	if r.ResetTCP {
		n, err := s.cfg.System.ResetTCP()
		if err != nil {
			return fmt.Errorf("reset tcp connections: %w", err)
		}
		reset = n
	}
	if !r.Time.IsZero() {
		s.cfg.Logf("synced clock to %s, %d bytes of entropy, hostname %q, %d tcp connections reset",
			r.Time.UTC().Format(time.RFC3339Nano), len(r.Entropy), r.Hostname, reset)
	}
	return nil
}

// readInfo describes the running guest.
func readInfo() (Info, error) {
	info := Info{Version: Version}
	var err error
	if info.Hostname, err = os.Hostname(); err != nil {
		return info, err
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return info, err
	}
	info.Kernel = unix.ByteSliceToString(u.Release[:])
	info.Time = time.Now()
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		info.BootID = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		info.Uptime = parseUptime(string(b))
	}
	return info, nil
}

// parseUptime reads the first field of /proc/uptime ("12.34 56.78").
func parseUptime(s string) time.Duration {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	sec, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(sec * float64(time.Second))
}

// rendezvousTimeout bounds how long an exec waits for its stdio streams, and
// how long stdio streams wait for their exec. The host sends them together,
// but a guest starved of CPU (fifty TCG guests on two cores) can take more
// than 10 s to take in the next frames, and a fan-out row then failed that
// would have run; the host's own deadline (60 s for a fan-out row) and the
// session's end are what bound an exec, this only what a host that never
// sends them can hold.
const rendezvousTimeout = time.Minute

// rendezvous collects the stdio streams of one exec: the host opens them
// right after the control stream, and they may be accepted in any order.
type rendezvous struct {
	streams [3]net.Conn
	arrived chan struct{} // one token per deposited stream
	claimed bool
	timer   *time.Timer
}

func (sess *session) entry(id string) *rendezvous {
	r := sess.pending[id]
	if r == nil {
		r = &rendezvous{arrived: make(chan struct{}, 3)}
		sess.pending[id] = r
		r.timer = time.AfterFunc(rendezvousTimeout, func() { sess.expire(id, r) })
	}
	return r
}

// expire drops streams nobody claimed in time.
func (sess *session) expire(id string, r *rendezvous) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if r.claimed || sess.pending[id] != r {
		return
	}
	delete(sess.pending, id)
	for _, st := range r.streams {
		if st != nil {
			st.Close()
		}
	}
}

// deposit hands a stdio stream to its exec. False if it cannot be taken.
func (sess *session) deposit(id string, fd int, st net.Conn) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if id == "" {
		return false
	}
	r := sess.entry(id)
	if r.streams[fd] != nil {
		return false
	}
	r.streams[fd] = st
	r.arrived <- struct{}{}
	return true
}

// claim waits for n stdio streams (fds 0..n-1) of exec id.
func (sess *session) claim(id string, n int) ([3]net.Conn, error) {
	sess.mu.Lock()
	if id == "" {
		sess.mu.Unlock()
		return [3]net.Conn{}, fmt.Errorf("exec without id: %w", ErrInvalid)
	}
	r := sess.entry(id)
	r.claimed = true
	r.timer.Stop()
	sess.mu.Unlock()
	defer func() {
		sess.mu.Lock()
		delete(sess.pending, id)
		sess.mu.Unlock()
	}()
	timeout := time.NewTimer(rendezvousTimeout)
	defer timeout.Stop()
	for got := 0; got < n; got++ {
		select {
		case <-r.arrived:
		case <-timeout.C:
			closeAll(r.streams[:])
			return [3]net.Conn{}, fmt.Errorf("stdio streams of exec %s did not arrive: %w", id, ErrProtocol)
		case <-sess.done:
			closeAll(r.streams[:])
			return [3]net.Conn{}, ErrClosed
		}
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for fd := 0; fd < n; fd++ {
		if r.streams[fd] == nil {
			closeAll(r.streams[:])
			return [3]net.Conn{}, fmt.Errorf("exec %s: missing fd %d: %w", id, fd, ErrProtocol)
		}
	}
	return r.streams, nil
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}
