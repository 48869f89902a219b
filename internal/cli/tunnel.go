package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

type TunnelOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	Spec   tunnelSpec
	Format string
	// listening, when set, is called with the address once it listens
	// (tests).
	listening func(addr string)
}

// tunnelSpec is LOCAL:[HOST:]REMOTE.
type tunnelSpec struct {
	Local  int    // 0: a free port
	Host   string // as the guest reaches it; "" is its loopback
	Remote int
}

func (s tunnelSpec) remote() string {
	host := s.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(s.Remote))
}

func NewCmdTunnel(f *Factory, runF func(context.Context, *TunnelOptions) error) *cobra.Command {
	opts := &TunnelOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "tunnel [VM] LOCAL:[HOST:]REMOTE",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Forward a port on this host's loopback to a port in HEAD or VM",
		Long: `Listen on 127.0.0.1:LOCAL and forward each connection to port REMOTE in the
VM (HEAD when none is named), as ssh -L does: to the VM's own loopback, or,
written LOCAL:HOST:REMOTE, to HOST as the VM reaches it. LOCAL 0 takes a free
port; the line printed (or, with --format json, the object) says which.
Connections go over the VM's agent channel, each its own stream, as many at
once as clients come; nothing listens beyond this host's loopback.

A connection the VM cannot make (nothing listens there) is said on stderr
and closed; the tunnel stays. It runs until Ctrl-C (exit 7), or until the VM
goes away (killed, stopped, put to sleep), which it says (exit 1).`,
		Example: `  vers tunnel 8080:80            # http://127.0.0.1:8080 is port 80 in HEAD
  vers tunnel db 0:5432 --format json
  vers tunnel web 9000:10.0.2.2:9000`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := args[len(args)-1]
			vm, err := vmArg(args[:len(args)-1])
			if err != nil {
				return err
			}
			opts.VM = vm
			if opts.Spec, err = parseTunnelSpec(spec); err != nil {
				return err
			}
			return dispatch(cmd, opts.Format, opts, runF, runTunnel)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (where it listens, once it does)")
	return cmd
}

// parseTunnelSpec reads LOCAL:REMOTE or LOCAL:HOST:REMOTE; HOST may be an
// IPv6 address in brackets.
func parseTunnelSpec(s string) (tunnelSpec, error) {
	bad := func(why string) (tunnelSpec, error) {
		return tunnelSpec{}, fmt.Errorf("%q: %s; write LOCAL:REMOTE or LOCAL:HOST:REMOTE, such as 8080:80 (LOCAL 0 takes a free port): %w", s, why, errUsage)
	}
	first := strings.Index(s, ":")
	last := strings.LastIndex(s, ":")
	if first < 0 {
		return bad("no REMOTE port")
	}
	var spec tunnelSpec
	var ok bool
	if spec.Local, ok = port(s[:first], 0); !ok {
		return bad(fmt.Sprintf("the LOCAL port %q is not 0-65535", s[:first]))
	}
	if spec.Remote, ok = port(s[last+1:], 1); !ok {
		return bad(fmt.Sprintf("the REMOTE port %q is not 1-65535", s[last+1:]))
	}
	if first != last {
		host := s[first+1 : last]
		ok := host != "" && !strings.ContainsAny(host, "[]:/ ")
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
			ok = net.ParseIP(host) != nil
		}
		if !ok {
			return bad(fmt.Sprintf("%q is no host name or address (an IPv6 address goes in brackets)", s[first+1:last]))
		}
		spec.Host = host
	}
	return spec, nil
}

// port parses a port number of at least lo.
func port(s string, lo int) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") || n < lo || n > 65535 {
		return 0, false
	}
	return n, true
}

// vmGone ends a tunnel whose VM went away, saying how ("was killed").
type vmGone struct{ how string }

func (g *vmGone) Error() string { return g.how }

func runTunnel(ctx context.Context, o *TunnelOptions) error {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return err
	}
	v, err := c.GetVM(ctx, ref)
	if err != nil {
		return headGone(ref, o.VM == "", err)
	}
	if v.State != api.StateRunning {
		return fmt.Errorf("vm %s is %s; a tunnel needs it running%s: %w", label(v), v.State, howToRun(v), errdefs.ErrConflict)
	}
	t := &tunnel{c: c, vm: v, spec: o.Spec, errOut: o.f.ErrOut, json: o.Format == "json"}
	ot, err := t.start(ctx)
	if err != nil {
		return err
	}
	if err := o.announce(v, ot.Local); err != nil {
		ot.Close()
		return err
	}
	if o.listening != nil {
		o.listening(ot.Local.String())
	}
	<-ot.Done()
	return ot.Err()
}

// openTunnel is a tunnel listening, until Close, ctx's end or its VM's.
type openTunnel struct {
	Local  *net.TCPAddr
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error
}

// Done is closed once the tunnel is closed and its connections are over.
func (o *openTunnel) Done() <-chan struct{} { return o.done }

// Close stops the tunnel and waits for its connections to end.
func (o *openTunnel) Close() {
	o.cancel(nil)
	<-o.done
}

// Err says why the tunnel closed, once Done is.
func (o *openTunnel) Err() error { return o.err }

// start listens on 127.0.0.1:LOCAL and forwards every connection accepted
// until ctx ends, the tunnel is closed, or its VM goes away.
func (t *tunnel) start(ctx context.Context) (*openTunnel, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(t.spec.Local)))
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1:%d: %v; choose another LOCAL port, or 0 for a free one: %w", t.spec.Local, err, errdefs.ErrConflict)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	ot := &openTunnel{Local: ln.Addr().(*net.TCPAddr), cancel: cancel, done: make(chan struct{})}
	go func() { cancel(watchGone(ctx, t.c, t.vm)) }()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer close(ot.done)
		ot.err = t.acceptAll(ctx, ln)
	}()
	return ot, nil
}

// acceptAll serves ln until it is closed, waits for the connections to
// end, and says why it stopped.
func (t *tunnel) acceptAll(ctx context.Context, ln net.Listener) error {
	local := ln.Addr()
	// The connections end with ctx: it is cancelled before they are waited for.
	var conns sync.WaitGroup
	defer conns.Wait()
	var acceptErr error
	for {
		conn, err := ln.Accept()
		if err != nil {
			acceptErr = err
			break
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			t.serve(ctx, conn.(*net.TCPConn))
		}()
	}
	if ctx.Err() == nil {
		return fmt.Errorf("tunnel on %s: %w", local, acceptErr)
	}
	cause := context.Cause(ctx)
	switch {
	case errors.As(cause, new(*vmGone)):
		return fmt.Errorf("vm %s %v; the tunnel on %s is closed", label(t.vm), cause, local)
	case errors.Is(cause, client.ErrEventsEnded), errors.Is(cause, client.ErrDaemonDown):
		return fmt.Errorf("versd went away; the tunnel on %s is closed (%v)", local, cause)
	case errors.Is(cause, context.Canceled):
		return fmt.Errorf("tunnel on %s stopped: %w", local, errCancelled)
	}
	return cause
}

// howToRun says how to run v again, if a command does.
func howToRun(v api.VM) string {
	switch v.State {
	case api.StatePaused:
		return "; `vers resume " + label(v) + "` runs it again"
	case api.StateSleeping:
		return "; `vers wake " + label(v) + "` wakes it"
	}
	return ""
}

// announce says where the tunnel listens: a line on stdout, or the
// TunnelResult object.
func (o *TunnelOptions) announce(v api.VM, local *net.TCPAddr) error {
	if o.Format == "json" {
		host := o.Spec.Host
		if host == "" {
			host = "127.0.0.1"
		}
		return json.NewEncoder(o.f.Out).Encode(api.TunnelResult{
			Local: local.String(), Port: local.Port, VMID: v.ID, Alias: v.Alias,
			RemoteHost: host, RemotePort: o.Spec.Remote,
		})
	}
	to := strconv.Itoa(o.Spec.Remote)
	if o.Spec.Host != "" {
		to = o.Spec.remote()
	}
	_, err := fmt.Fprintf(o.f.Out, "forwarding %s -> %s:%s (Ctrl-C to stop)\n", local, label(v), to)
	return err
}

// watchGone follows the events until the VM v is killed, stops or sleeps
// (a *vmGone), the stream ends, or ctx does.
func watchGone(ctx context.Context, c Daemon, v api.VM) error {
	for {
		err := c.Events(ctx, func(e api.Event) error {
			if why := goneBy(e, v.ID); why != "" {
				return &vmGone{why}
			}
			return nil
		})
		if errors.Is(err, client.ErrLagged) {
			continue // the new hello says whether it is still there
		}
		return err
	}
}

// goneBy says how event e ends VM id's tunnel, or "".
func goneBy(e api.Event, id string) string {
	switch e.Type {
	case api.EventHello:
		for _, v := range e.VMs {
			if v.ID == id {
				return goneState(v)
			}
		}
		return "was killed"
	case api.EventVMKilled:
		if e.VMID == id {
			return "was killed"
		}
	case api.EventVMState:
		if e.VM != nil && e.VM.ID == id {
			return goneState(*e.VM)
		}
	}
	return ""
}

// goneState says why a VM in state v.State takes no more connections.
func goneState(v api.VM) string {
	switch v.State {
	case api.StateDead:
		if v.StateReason != "" {
			return "died (" + v.StateReason + ")"
		}
		return "died"
	case api.StateSleeping:
		return "was put to sleep"
	}
	return ""
}

// tunnel forwards the connections of one `vers tunnel`.
type tunnel struct {
	c      Daemon
	vm     api.VM
	spec   tunnelSpec
	errOut io.Writer
	json   bool
	mu     sync.Mutex // one report at a time
}

// serve forwards one accepted connection until both sides are done.
func (t *tunnel) serve(ctx context.Context, local *net.TCPConn) {
	defer local.Close()
	remote, err := t.c.Tunnel(ctx, t.vm.ID, t.spec.Host, t.spec.Remote)
	if err != nil {
		if ctx.Err() == nil {
			t.report(local, err)
		}
		local.SetLinger(0)
		return
	}
	defer remote.Close()
	if err := pipe(local, remote); err != nil && ctx.Err() == nil {
		t.report(local, err)
	}
}

// report says once why a connection failed: on stderr, as a line or, with
// --format json, an error object.
func (t *tunnel) report(local net.Conn, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	msg := fmt.Sprintf("connection from %s: %s", local.RemoteAddr(), message(err))
	if t.json {
		json.NewEncoder(t.errOut).Encode(api.CLIError{Error: api.Error{Code: errdefs.Code(err), Message: msg}})
		return
	}
	fmt.Fprintln(t.errOut, "vers: tunnel:", msg)
}

// pipe copies between the local connection and the one in the VM both
// ways, passing half-closes on; a reset of either resets the other. It
// returns the reset's error from the VM's side, nil for an orderly end or
// a local client that went away.
func pipe(local *net.TCPConn, remote client.TunnelConn) error {
	var once sync.Once
	reset := func() {
		once.Do(func() {
			local.SetLinger(0)
			local.Close()
			remote.Close()
		})
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		if _, err := io.Copy(remote, local); err != nil {
			reset()
			return
		}
		remote.CloseWrite()
	}()
	if _, err := io.Copy(local, remote); err != nil {
		reset()
		<-sent
		if errors.Is(err, client.ErrTunnelReset) {
			return err
		}
		return nil
	}
	local.CloseWrite()
	// The end: orderly once the local client half-closed too, or a reset.
	_, err := remote.Read(make([]byte, 1))
	if err != io.EOF {
		reset()
	}
	<-sent
	if err != io.EOF && errors.Is(err, client.ErrTunnelReset) {
		return err
	}
	return nil
}
