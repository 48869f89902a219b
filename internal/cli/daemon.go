package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vers/api"
	"vers/client"
	"vers/internal/buildid"
	"vers/internal/errdefs"
	"vers/internal/paths"
)

// How long a starting versd may take to serve (it recovers the VMs that
// survived the last one first), and an old one to stop.
const (
	daemonStartTimeout = 60 * time.Second
	daemonStopTimeout  = 15 * time.Second
)

// ensureDaemon returns a client of versd, starting the daemon (detached, in
// its own session, so it outlives this command) when nothing answers, and
// restarting it when it is of another build than the versd next to this
// command, or runs files that are gone. VMs survive a restart: the new
// daemon re-attaches to their QEMUs.
//
// Many commands may do this at once: the one that holds the start lock
// starts or restarts versd, and the others, waiting on that lock, then find
// it serving. Nobody loses.
func ensureDaemon(ctx context.Context, layout paths.Layout, errOut io.Writer) (*client.Client, error) {
	c := client.New(layout.Socket())
	h, err := c.Health(ctx)
	if err == nil {
		why, bin := restartReason(h)
		if why == "" {
			return c, nil
		}
		if bin == "" {
			fmt.Fprintf(errOut, "vers: versd (pid %d) %s, and no versd is installed next to vers or on PATH to replace it;\n"+
				"vers: build vers again (scripts/setup.sh does), then run any vers command (VMs keep running)\n", h.PID, why)
			return c, nil
		}
	} else if answered(err) {
		return nil, err
	}
	// Down, or going (a connection cut by a daemon that another command is
	// restarting): look again under the start lock.
	if err := os.MkdirAll(layout.Home, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, layout.StartLock())
	if err != nil {
		return nil, fmt.Errorf("wait for the versd start lock: %w", err)
	}
	defer unlock()
	// Whoever held the lock before may have started or restarted it.
	h, err = c.Health(ctx)
	listen := "" // the TCP address of a daemon replaced, which its successor keeps
	switch {
	case err == nil:
		why, bin := restartReason(h)
		if why == "" || bin == "" {
			return c, nil
		}
		if h.Busy > 0 {
			fmt.Fprintf(errOut, "vers: versd (pid %d) %s, but %d request(s) are in flight, so it keeps running;\n"+
				"vers: to restart it when they are done: kill %d (VMs keep running; the next vers command starts a new one)\n",
				h.PID, why, h.Busy, h.PID)
			return c, nil
		}
		fmt.Fprintf(errOut, "vers: versd (pid %d) %s; restarting it (VMs keep running)\n", h.PID, why)
		if err := stopDaemon(ctx, layout, h.PID); err != nil {
			return nil, err
		}
		listen = h.Listen
	case answered(err):
		return nil, err
	}
	if err := startDaemon(ctx, layout, listen); err != nil {
		// A versd started some other way may have come up meanwhile.
		if _, herr := c.Health(ctx); herr == nil {
			return c, nil
		}
		return nil, err
	}
	return c, nil
}

// answered reports whether err is versd's own answer (an API error), as
// opposed to no daemon or a connection that failed.
func answered(err error) bool {
	var ae *client.Error
	return errors.As(err, &ae)
}

// restartReason says why the daemon h should be replaced, or "" when it
// should not, and bin is the versd this command would replace it with ("" if
// none is installed).
func restartReason(h api.Health) (why, bin string) {
	bin, _ = versdBinary()
	if h.Stale != "" {
		return h.Stale, bin
	}
	if bin == "" {
		return "", ""
	}
	want, err := buildid.Of(bin)
	if err != nil || h.Build == "" || want == h.Build {
		return "", bin
	}
	return "is of another build than " + bin, bin
}

// startDaemon starts versd (with --listen listen, unless it is "") and
// waits until it serves, or says why it could not start: versd writes
// "ready", or its reason, on a pipe it gets as fd 3.
func startDaemon(ctx context.Context, layout paths.Layout, listen string) error {
	bin, err := versdBinary()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(layout.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(bin)
	if listen != "" {
		cmd.Args = append(cmd.Args, "--listen", listen)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(os.Environ(), "VERS_READY_FD=3")
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start versd: %w", err)
	}
	go cmd.Wait() // reap it if it exits while this command still runs

	said := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 64<<10)) // until versd closes it or exits
		said <- strings.TrimSpace(string(b))
	}()
	timer := time.NewTimer(daemonStartTimeout)
	defer timer.Stop()
	select {
	case msg := <-said:
		switch msg {
		case "ready":
			return nil
		case "":
			return fmt.Errorf("versd exited at start without saying why; see %s", layout.Log())
		}
		return fmt.Errorf("versd could not start: %s", msg)
	case <-timer.C:
		return fmt.Errorf("versd did not serve within %s; see %s: %w", daemonStartTimeout, layout.Log(), errdefs.ErrTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopDaemon asks versd pid to stop and waits until it has released its
// lock, which it holds for as long as it runs.
func stopDaemon(ctx context.Context, layout paths.Layout, pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop versd (pid %d): %w", pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, daemonStopTimeout)
	defer cancel()
	unlock, err := lockFile(wctx, layout.PIDFile())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("versd (pid %d) did not stop within %s; stop it with kill -KILL %d (VMs keep running) and try again: %w",
			pid, daemonStopTimeout, pid, errdefs.ErrTimeout)
	}
	unlock()
	return nil
}

// lockFile takes an exclusive flock on path, waiting for it until ctx ends.
// The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	got := make(chan error, 1)
	go func() { got <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, err
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// The flock may still be granted later: closing the file drops it.
		go func() { <-got; f.Close() }()
		return nil, ctx.Err()
	}
}

// versdBinary finds versd next to this executable, or on PATH.
func versdBinary() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "versd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("versd")
	if err != nil {
		return "", fmt.Errorf("versd is not installed next to vers nor on PATH: %w", errdefs.ErrUnavailable)
	}
	return p, nil
}
