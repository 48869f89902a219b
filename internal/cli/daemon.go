package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/paths"
)

// ensureDaemon returns a client of versd, starting the daemon (detached, in
// its own session, so it outlives this command) when nothing answers.
func ensureDaemon(ctx context.Context, layout paths.Layout) (*client.Client, error) {
	c := client.New(layout.Socket())
	if _, err := c.Health(ctx); err == nil {
		return c, nil
	} else if !errors.Is(err, client.ErrDaemonDown) {
		return nil, err
	}
	bin, err := versdBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(layout.Home, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(layout.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Health(ctx); err == nil {
			return c, nil
		}
		select {
		case err := <-exited:
			// Another vers may have started it at the same moment: that one wins.
			if _, herr := c.Health(ctx); herr == nil {
				return c, nil
			}
			return nil, fmt.Errorf("versd exited at start (%v); see %s", err, layout.Log())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("versd did not answer within 20s; see %s: %w", layout.Log(), errdefs.ErrTimeout)
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
