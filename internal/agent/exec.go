package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"
)

// drainAfterExit: once the process has exited, output keeps being delivered
// as long as it arrives within this time. A background descendant that keeps
// stdout open longer does not hold the exit back.
const drainAfterExit = 200 * time.Millisecond

// running is a started process and the guest ends of its standard files.
type running struct {
	pid    int
	tty    bool
	master *os.File   // TTY only
	stdin  *os.File   // pipe write end, or the master
	outs   []*os.File // stdout and stderr read ends, or the master
	wait   func() unix.WaitStatus

	mu       sync.Mutex
	exited   atomic.Bool
	timedOut atomic.Bool
}

// kill signals the process group unless the process has been waited for
// (its pid, and so its group id, could belong to somebody else by then).
func (r *running) kill(sig unix.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited.Load() {
		return nil
	}
	return unix.Kill(-r.pid, sig)
}

func (r *running) markExited() {
	r.mu.Lock()
	r.exited.Store(true)
	r.mu.Unlock()
}

func (s *Server) exec(sess *session, ctrl *yamux.Stream, req request) {
	defer ctrl.Close()
	if req.Exec == nil {
		writeMsg(ctrl, reply{Error: "exec without parameters", Code: codeInvalid})
		return
	}
	x := *req.Exec
	nfd := 3
	if x.TTY {
		nfd = 2
	}
	streams, err := sess.claim(req.ID, nfd)
	if err != nil {
		writeMsg(ctrl, replyFor(err, reply{}))
		return
	}
	defer closeAll(streams[:])
	pl, err := planExec(x, s.cfg.HomeDir, lookPath)
	if err != nil {
		writeMsg(ctrl, replyFor(err, reply{}))
		return
	}
	if pl.Missing != "" {
		failStart(ctrl, streams, x.TTY, pl.Missing, 127)
		return
	}
	if fi, err := os.Stat(pl.Dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = unix.ENOTDIR
		}
		failStart(ctrl, streams, x.TTY, fmt.Sprintf("cd %s: %v", pl.Dir, pathErr(err)), 126)
		return
	}
	r, err := s.startProcess(pl, x)
	if err != nil {
		code, msg := startFailure(pl, err)
		failStart(ctrl, streams, x.TTY, msg, code)
		return
	}
	if err := writeMsg(ctrl, reply{}); err != nil {
		r.kill(unix.SIGKILL)
	}
	s.supervise(ctrl, streams, r, x.Timeout)
}

// failStart reports a process that could not start the way a shell does:
// a message on stderr (the terminal for a TTY) and an exit code.
func failStart(ctrl net.Conn, streams [3]net.Conn, tty bool, msg string, code int) {
	if writeMsg(ctrl, reply{}) != nil {
		return
	}
	out, nl := streams[2], "\n"
	if tty {
		out, nl = streams[1], "\r\n"
	}
	io.WriteString(out, "vers-agent: "+msg+nl)
	streams[1].Close()
	if streams[2] != nil {
		streams[2].Close()
	}
	writeMsg(ctrl, event{Exit: &Result{ExitCode: code}})
}

// pathErr strips the operation and path an *fs.PathError repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// startFailure maps an error from starting a program to a shell's exit code
// and message.
func startFailure(pl plan, err error) (int, string) {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "chdir" {
		return 126, fmt.Sprintf("cd %s: %v", pl.Dir, pe.Err)
	}
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return 127, fmt.Sprintf("%s: %v", pl.Argv[0], err)
	}
	return 126, fmt.Sprintf("%s: %v", pl.Argv[0], err)
}

// spawn starts cmd, without address-space randomization when fixed is set.
func (s *Server) spawn(cmd *exec.Cmd, fixed bool) (func() unix.WaitStatus, error) {
	start := startDirect
	if s.cfg.Reaper != nil {
		start = s.cfg.Reaper.start
	}
	if !fixed {
		return start(cmd)
	}
	var wait func() unix.WaitStatus
	err := withPersonality(addrNoRandomize, func() (err error) {
		wait, err = start(cmd)
		return err
	})
	return wait, err
}

// addrNoRandomize is ADDR_NO_RANDOMIZE of <linux/personality.h>.
const addrNoRandomize = 0x0040000

// personality is personality(2); 0xffffffff only reads the current one. A
// variable, so that tests can make each call fail.
var personality = sysPersonality

func sysPersonality(p uint) (uint, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(p), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return uint(r), nil
}

// withPersonality runs fn on a thread whose personality has flag added, so
// that a process fn forks inherits it. A personality belongs to a thread:
// the goroutine is locked to its thread, and stays locked (the thread ends
// with it) if the old personality cannot be put back.
func withPersonality(flag uint, fn func() error) error {
	runtime.LockOSThread()
	old, err := personality(0xffffffff)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("personality: %w", err)
	}
	if _, err := personality(old | flag); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("personality: %w", err)
	}
	ferr := fn()
	if _, err := personality(old); err == nil {
		runtime.UnlockOSThread()
	}
	return ferr
}

func (s *Server) startProcess(pl plan, x ExecRequest) (*running, error) {
	cmd := &exec.Cmd{Path: pl.Path, Args: pl.Argv, Env: pl.Env, Dir: pl.Dir}
	if x.TTY {
		return s.startTTY(cmd, x.Rows, x.Cols, x.FixedLayout)
	}
	return s.startPipes(cmd, x.FixedLayout)
}

func (s *Server) startPipes(cmd *exec.Cmd, fixed bool) (*running, error) {
	var files []*os.File // every pipe end, for cleanup on failure
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeFiles()
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeFiles()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	wait, err := s.spawn(cmd, fixed)
	if err != nil {
		closeFiles()
		return nil, err
	}
	inR.Close()
	outW.Close()
	errW.Close()
	return &running{pid: cmd.Process.Pid, stdin: inW, outs: []*os.File{outR, errR}, wait: wait}, nil
}

func (s *Server) startTTY(cmd *exec.Cmd, rows, cols uint16, fixed bool) (*running, error) {
	m, tty, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer tty.Close()
	master, err := pollable(m)
	if err != nil {
		return nil, err
	}
	if rows > 0 && cols > 0 {
		if err := setWinsize(master, rows, cols); err != nil {
			master.Close()
			return nil, err
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	wait, err := s.spawn(cmd, fixed)
	if err != nil {
		master.Close()
		return nil, err
	}
	return &running{pid: cmd.Process.Pid, tty: true, master: master, stdin: master,
		outs: []*os.File{master}, wait: wait}, nil
}

// pollable replaces f (left in blocking mode by the pty package) with a
// non-blocking duplicate, so reads can be given deadlines and are woken by Close.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// fdControl runs fn on f's descriptor without switching it to blocking mode.
func fdControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func setWinsize(master *os.File, rows, cols uint16) error {
	return fdControl(master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
}

// typeEOF types the terminal's end-of-file character if the terminal is in
// canonical mode, where it means end of input; in raw mode it would be a key.
func typeEOF(master *os.File) {
	var eof byte
	fdControl(master, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		if t.Lflag&unix.ICANON != 0 {
			eof = t.Cc[unix.VEOF]
		}
		return nil
	})
	if eof != 0 {
		master.Write([]byte{eof})
	}
}

// supervise runs a started process to its end: it streams its files,
// applies control messages and the timeout, and reports the exit last.
func (s *Server) supervise(ctrl *yamux.Stream, streams [3]net.Conn, r *running, timeout time.Duration) {
	var copiers sync.WaitGroup
	for i, f := range r.outs {
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			copyOut(streams[1+i], f, r)
		}()
	}
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		io.Copy(r.stdin, streams[0])
		if r.tty {
			typeEOF(r.master)
		} else {
			r.stdin.Close()
		}
	}()
	go s.control(ctrl, streams, r)
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() {
			r.timedOut.Store(true)
			r.kill(unix.SIGKILL)
		})
		defer t.Stop()
	}

	ws := r.wait()
	r.markExited()
	for _, f := range r.outs {
		f.SetReadDeadline(time.Now().Add(drainAfterExit))
	}
	copiers.Wait()
	for _, f := range r.outs {
		f.Close()
	}
	r.stdin.Close()
	streams[0].SetReadDeadline(time.Now())
	<-inDone
	streams[1].Close()
	if streams[2] != nil {
		streams[2].Close()
	}
	res := resultOf(ws)
	res.TimedOut = r.timedOut.Load()
	writeMsg(ctrl, event{Exit: &res})
	ctrl.SetReadDeadline(time.Now())
}

// copyOut streams one output of the process to the host. After the process
// exited it stops at the first pause in the output longer than drainAfterExit.
func copyOut(dst net.Conn, src *os.File, r *running) {
	buf := make([]byte, 32<<10)
	for {
		if r.exited.Load() {
			src.SetReadDeadline(time.Now().Add(drainAfterExit))
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				// Nobody reads any more: the process gets EPIPE, like with a closed pipe.
				src.Close()
				return
			}
		}
		if err != nil {
			// EOF; EIO from a PTY whose terminal was closed; or the deadline.
			return
		}
	}
}

// control applies the host's control messages. The control stream ending
// before the process did means the host abandoned it: kill its group.
func (s *Server) control(ctrl *yamux.Stream, streams [3]net.Conn, r *running) {
	for {
		var c control
		if err := readMsg(ctrl, &c); err != nil {
			if !r.exited.Load() {
				r.kill(unix.SIGKILL)
				closeAll(streams[:])
			}
			return
		}
		if c.Resize != nil && r.master != nil {
			if err := setWinsize(r.master, c.Resize.Rows, c.Resize.Cols); err != nil {
				s.cfg.Logf("resize pid %d: %v", r.pid, err)
			}
		}
		if c.Signal > 0 {
			if err := r.kill(unix.Signal(c.Signal)); err != nil {
				s.cfg.Logf("signal pid %d: %v", r.pid, err)
			}
		}
	}
}
