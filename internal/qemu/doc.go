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
// This package must never keep state of its own about VMs (the store does),
// never leave a QEMU running after a failed Start, and never signal a process
// it has not verified to be the QEMU of the given VM directory.
package qemu
