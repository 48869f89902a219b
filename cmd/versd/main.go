// Command versd is the vers daemon: one per host, it owns all VM state and
// serves the vers API on a unix socket, and with --listen ADDR:PORT (or
// VERS_LISTEN) over TCP to bearers of its token too. The vers CLI starts it
// on demand.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"vers/internal/config"
	"vers/internal/daemon"
	"vers/internal/errdefs"
)

func main() {
	notify := readyPipe()
	fail := func(err error) {
		msg := errdefs.Message(err)
		fmt.Fprintln(os.Stderr, "versd:", msg)
		if notify != nil {
			fmt.Fprintln(notify, msg)
		}
		os.Exit(1)
	}
	listen := flag.String("listen", "", "also serve the API over TCP at `ADDR:PORT` (such as 127.0.0.1:7777), to bearers of the token in $VERS_HOME/versd.token; overrides VERS_LISTEN")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q; versd takes only --listen", flag.Arg(0)))
	}
	cfg, err := config.ForDaemon(os.Getenv)
	if err != nil {
		fail(err)
	}
	if *listen != "" {
		if cfg.Listen, err = config.ParseListen(*listen); err != nil {
			fail(fmt.Errorf("--listen %w", err))
		}
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
