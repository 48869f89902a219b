// Command vers-demo runs the database tutorial (set up once, branch, migrate
// in parallel) through the vers CLI with readable output, then measures the
// tutorial's Step 6: the same work done the traditional way (a fresh VM and
// the whole setup for every migration, one after the other) against the vers
// way, in the same run. It kills every VM it made, also when interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	var o options
	flag.StringVar(&o.vers, "vers", defaultVers(), "path of the vers binary")
	flag.IntVar(&o.rows, "rows", 0, "extra generated users, products and orders in the setup (0 = the tutorial's data only)")
	flag.StringVar(&o.prefix, "prefix", "", "prefix for the VM aliases (when the tutorial's are taken)")
	flag.BoolVar(&o.skipTraditional, "skip-traditional", false, "run the tutorial only, without Step 6's traditional way")
	flag.Parse()
	if o.rows < 0 {
		fmt.Fprintln(os.Stderr, "vers-demo: --rows must be >= 0")
		os.Exit(2)
	}
	// The first signal cancels the run; the handler stays installed so that
	// the cleanup (which kills every VM the demo made) is not cut short.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nvers-demo: %v: stopping and cleaning up\n", s)
		cancel()
	}()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vers-demo:", err)
		os.Exit(1)
	}
}

// defaultVers is the vers next to this binary, else the one on PATH.
func defaultVers() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vers")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("vers"); err == nil {
		return p
	}
	return "vers"
}
