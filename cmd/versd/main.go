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
	"syscall"

	"vers/internal/daemon"
	"vers/internal/paths"
)

func main() {
	layout := paths.Default()
	if err := os.MkdirAll(layout.Home, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "versd:", err)
		os.Exit(1)
	}
	var out io.Writer = os.Stderr
	if f, err := os.OpenFile(layout.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		out = f
		defer f.Close()
	}
	level := slog.LevelInfo
	if os.Getenv("VERS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, layout, log); err != nil {
		log.Error("versd stopped", "err", err)
		fmt.Fprintln(os.Stderr, "versd:", err)
		os.Exit(1)
	}
}
