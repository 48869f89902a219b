// Command vers-agent runs inside every vers VM as PID 1 and serves the host
// over the virtio-serial port "vers.agent".
//
// One static binary plays three parts, chosen at start (guest.DetectStage):
//
//   - initramfs: PID 1 on the kernel's in-memory root that holds
//     /lib/modules/load-order. Loads the modules, mounts the root device
//     (vers.root=, default /dev/vda), switches root and goes on as the
//     rootfs stage in the same process.
//   - rootfs: PID 1 on the real root. Mounts, grows the root filesystem,
//     configures the network and hostname (vers.hostname=, default "vers"),
//     reaps orphans, and serves the host forever.
//   - development: not PID 1. Changes nothing on the machine; serves one
//     connection on stdin/stdout (-stdio) or every connection to a unix
//     socket (-listen PATH), for tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"vers/internal/agent"
	"vers/internal/agent/guest"
)

func main() {
	listen := flag.String("listen", "", "development: serve every connection to this unix socket")
	stdio := flag.Bool("stdio", false, "development: serve one session on stdin/stdout")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(agent.Version)
		return
	}
	atLeastTwoProcs()
	switch guest.DetectStage() {
	case guest.StageInitramfs:
		log := guest.NewConsoleLogger()
		if err := guest.RunInitramfs(log.Logf); err != nil {
			log.Logf("initramfs stage failed: %v", err)
			// PID 1 must not exit: the kernel would panic and the log be lost.
			select {}
		}
		// The same process goes on as the root filesystem's init: the copy
		// installed there (/sbin/vers-agent, /sbin/init) is the same binary,
		// and not executing it again saves reading it from disk and a second
		// start-up (~0.3 s of a boot on TCG).
		runRoot(log)
	case guest.StageRootfs:
		runRoot(guest.NewConsoleLogger())
	default:
		if err := runDev(*listen, *stdio); err != nil {
			fmt.Fprintln(os.Stderr, "vers-agent:", err)
			os.Exit(1)
		}
	}
}

// atLeastTwoProcs gives the Go scheduler two Ps on a one-vCPU guest. With
// one, every syscall that outlasts sysmon's 20 µs tick has its P taken away
// and handed to another thread (no P is idle, so the runtime assumes other
// work waits), and sysmon keeps polling at that tick; under TCG nearly
// every syscall lasts that long. Measured in a guest over 50 file reads from
// the host: 200 context switches and 26 ms of the agent's CPU per read with
// one P, half the switches and 15 ms with two; `vers execute VM true` cost
// the guest 44 ms of CPU against 52 ms.
func atLeastTwoProcs() {
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}

// rootSystem applies sync requests and keeps /etc/hostname and /etc/hosts
// in step with the kernel hostname.
type rootSystem struct{ agent.LinuxSystem }

func (rootSystem) SetHostname(name string) error { return guest.SetHostname(name) }

func runRoot(log *guest.Logger) {
	t0 := time.Now()
	ctx := context.Background()
	go guest.HandlePowerSignals(log.Logf)
	guest.MountAll(log.Logf)
	reaper := agent.NewReaper(log.Logf)
	go reaper.Run(ctx)
	journal, err := agent.StartJournal("/", log.Logf)
	if err != nil {
		log.Logf("no change journal (vers diff walks the whole tree): %v", err)
	}
	srv := agent.NewServer(agent.ServerConfig{System: rootSystem{}, Reaper: reaper, Logf: log.Logf, Journal: journal})
	go servePort(ctx, srv, log)

	cmd := guest.ReadCmdline()
	if err := guest.SetHostname(cmd.Get("vers.hostname", "vers")); err != nil {
		log.Logf("hostname: %v", err)
	}
	if err := guest.GrowRoot(log.Logf); err != nil {
		log.Logf("grow root filesystem: %v", err)
	}
	if err := guest.SetupNetwork(guest.DefaultNet, 5*time.Second); err != nil {
		log.Logf("network: %v", err)
	}
	srv.Ready()
	log.Logf("ready in %v (agent %s)", time.Since(t0).Round(time.Millisecond), agent.Version)
	select {}
}

// servePort finds the agent port and serves it forever.
func servePort(ctx context.Context, srv *agent.Server, log *guest.Logger) {
	warned := false
	for {
		dev, err := agent.FindPort("/sys", agent.PortName)
		if err != nil {
			if !warned {
				log.Logf("waiting for virtio-serial port %q: %v", agent.PortName, err)
				warned = true
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		port, err := agent.OpenVirtioPort(dev)
		if err != nil {
			log.Logf("%v", err)
			time.Sleep(time.Second)
			continue
		}
		log.Logf("serving on %s", dev)
		err = srv.ServePort(ctx, port)
		log.Logf("port %s: %v", dev, err)
		port.Close()
		time.Sleep(time.Second)
	}
}

func runDev(listen string, stdio bool) error {
	ctx := context.Background()
	srv := agent.NewServer(agent.ServerConfig{Logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "vers-agent: "+f+"\n", a...)
	}})
	srv.Ready()
	switch {
	case stdio:
		return srv.ServeConn(ctx, stdioConn{})
	case listen != "":
		os.Remove(listen)
		ln, err := net.Listen("unix", listen)
		if err != nil {
			return err
		}
		for {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			go srv.ServeConn(ctx, conn)
		}
	}
	return fmt.Errorf("not PID 1: give -listen PATH or -stdio")
}

type stdioConn struct{}

func (stdioConn) Read(b []byte) (int, error)  { return os.Stdin.Read(b) }
func (stdioConn) Write(b []byte) (int, error) { return os.Stdout.Write(b) }
func (stdioConn) Close() error                { os.Stdin.Close(); return os.Stdout.Close() }

var _ io.ReadWriteCloser = stdioConn{}
