// Command versd is the vers daemon: one per host, it owns all VM state and
// serves the vers API on a unix socket. The vers CLI starts it on demand.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"vers/internal/config"
	"vers/internal/daemon"
)

func main() {
	notify := readyPipe()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "versd:", err)
		if notify != nil {
			fmt.Fprintln(notify, err)
		}
		os.Exit(1)
	}
	cfg, err := config.ForDaemon(os.Getenv)
	if err != nil {
		fail(err)
	}
	layout := cfg.Layout
	if err := os.MkdirAll(layout.Home, 0o700); err != nil {
		fail(err)
	}
	var out io.Writer = os.Stderr
	if f, err := os.OpenFile(layout.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		out = f
		defer f.Close()
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := func() {
		if notify != nil {
			fmt.Fprintln(notify, readyLine)
			notify.Close()
			notify = nil
		}
	}
	if err := daemon.Run(ctx, cfg, log, ready); err != nil {
		log.Error("versd stopped", "err", err)
		stop()
		fail(err)
	}
}

// readyLine is what versd writes on its ready pipe once it serves; anything
// else on it is the reason it could not start.
const readyLine = "ready"

// readyPipe is the pipe the vers CLI passes (as fd VERS_READY_FD) to learn
// when this daemon serves, or why it could not start: versd's stderr is its
// log, which the CLI would otherwise have to search. The descriptor is closed
// on exec, so no QEMU or build tool holds it open.
func readyPipe() *os.File {
	v := os.Getenv("VERS_READY_FD")
	os.Unsetenv("VERS_READY_FD")
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}
