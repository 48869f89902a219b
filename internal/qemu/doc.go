// Package qemu is the driver for QEMU processes: it builds command lines (pure),
// speaks QMP, and starts, finds, stops and kills one QEMU per VM directory. The
// daemon touches QEMU only through this package.
//
// VMs outlive the daemon. QEMU is started with -daemonize and -pidfile rather
// than as a setsid child: QEMU's daemonizing parent exits only once the VM is
// fully set up (sockets listening, pidfile written, devices realized), with
// status 0 on success and its error message on stderr otherwise. That gives
// Start a reliable "ready or failed, and why" without polling, and the running
// QEMU is never the caller's child: it sits in its own session, is reaped by
// init, and nothing the daemon does to itself (exit, kill -9, a signal to its
// process group) reaches it. A restarted daemon finds it again through the
// pidfile, checked against /proc/PID/cmdline so a reused PID is never taken
// for a VM, and through the QMP socket.
//
// QMP is spoken by a small client of its own (qmp.go) rather than
// digitalocean/go-qemu's: every call here needs a context (a branch must not
// hang on a stuck QEMU), QEMU's error class (to tell a missing command from a
// failed one), file descriptors passed with a command (getfd) without the
// "oob" capability, and replies matched to commands by id so that a reply
// arriving after its caller gave up is dropped, not handed to the next call.
//
// An isolated VM's network (NetIsolated, the default) is a passt process of
// its own (Debian's passt with QEMU's -netdev stream): passt turns the
// guest's frames into ordinary sockets of the host, so the guest connects out
// as any host program does. QEMU's user networking (slirp) is not used: it
// maps 10.0.2.2 to the host's 127.0.0.1 and so lets a guest reach every host
// loopback service. passt runs with --no-map-gw (the gateway is not the
// host), no port forwarded either way, IPv4 only, and DNS sent to 10.0.2.3
// forwarded to the host's resolver; it does not hand a guest's packets for
// 127.0.0.1 to the host's loopback either. Each VM, each branch child
// included, has its own passt, so guests share no network and none can
// address another.
//
// QEMU and passt share a socket pair, not a socket path: passt drops to user
// nobody before it binds or writes anything, so its socket would have to be
// in a directory nobody can write, where any process running as nobody could
// connect to it. With a pair nothing on the host leads to a VM's network,
// and passt exits by itself once QEMU's end closes (--fd implies --one-off),
// however QEMU ended. passt runs in the foreground in a session of its own;
// Start writes its PID and start time to passt.pid in the VM directory,
// where Kill, Stop and a restarted daemon find it.
//
// This package must never keep state of its own about VMs (the store does),
// never leave a QEMU or a passt running after a failed Start, and never
// signal a process it has not verified to be the QEMU or the passt of the
// given VM directory.
package qemu
