package agent

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper waits for every child of PID 1: orphans re-parented to init as well
// as the processes the agent started. It is the only caller of wait4, so an
// orphan's reaping can never steal the exit status of an agent process: those
// are registered under the same lock that is held while they are forked, and
// their status is handed to whoever waits for them.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	logf    func(string, ...any)
}

// NewReaper returns a reaper; call Run to start reaping.
func NewReaper(logf func(string, ...any)) *Reaper {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Reaper{waiters: map[int]chan unix.WaitStatus{}, logf: logf}
}

// Run reaps children on every SIGCHLD until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	// A slow tick catches anything a coalesced signal might have hidden.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
		}
	}
}

// start starts cmd and returns a function that waits for its status.
func (r *Reaper) start(cmd *exec.Cmd) (func() unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[cmd.Process.Pid] = ch
	proc := cmd.Process
	return func() unix.WaitStatus {
		ws := <-ch
		proc.Release()
		return ws
	}, nil
}

// startDirect starts cmd in a process that is not init: each child is waited
// for by itself.
func startDirect(cmd *exec.Cmd) (func() unix.WaitStatus, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() unix.WaitStatus {
		st, err := cmd.Process.Wait()
		if err != nil {
			return unix.WaitStatus(0xff00) // exit 255: status unknown
		}
		return unix.WaitStatus(st.Sys().(syscall.WaitStatus))
	}, nil
}

// resultOf converts a wait status to a Result.
func resultOf(ws unix.WaitStatus) Result {
	switch {
	case ws.Exited():
		return Result{ExitCode: ws.ExitStatus()}
	case ws.Signaled():
		sig := ws.Signal()
		return Result{ExitCode: 128 + int(sig), Signal: unix.SignalName(sig)}
	}
	return Result{ExitCode: 255}
}
