package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echoServer is a server for the guest in the image's perl (perl-base is
// in every Debian): it answers each connection, once the client has
// half-closed, with "echo:" and all it sent, then closes. It listens on
// the guest's loopback only and says when it does.
const echoServer = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 128, ReuseAddr => 1) or die "listen: $!";
open(my $r, ">", "/tmp/echo.ready"); close $r;
$SIG{CHLD} = "IGNORE";
while (1) {
	my $c = $s->accept or next;
	if (fork() == 0) { local $/; my $d = <$c>; print $c "echo:$d"; close $c; exit 0 }
	close $c;
}
`

// startEchoServer runs echoServer in VM alias on port, and returns once it
// listens.
func startEchoServer(t *testing.T, p *project, alias string, port int) {
	t.Helper()
	r := p.versIn(echoServer, "cp", "-", alias+":/root/echo.pl")
	if r.code != 0 {
		t.Fatalf("cp echo.pl: %d %s", r.code, r.err)
	}
	p.must("execute", alias, fmt.Sprintf(`nohup perl /root/echo.pl %d >/root/echo.log 2>&1 &
for i in $(seq 300); do [ -e /tmp/echo.ready ] && exit 0; sleep 0.1; done; cat /root/echo.log; exit 1`, port))
}

// tunnelProc is a `vers tunnel` running in the background.
type tunnelProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// startTunnel runs `vers tunnel ARGS... --format json` and returns once it
// listens.
func startTunnel(t *testing.T, p *project, args ...string) *tunnelProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "vers"), append(append([]string{"tunnel"}, args...), "--format", "json")...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	tp := &tunnelProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = tp.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() {
		io.Copy(io.Discard, out)
		cmd.Wait()
		tp.code = cmd.ProcessState.ExitCode()
		close(tp.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-tp.done
	})
	var res struct {
		Local      string `json:"local"`
		Port       int    `json:"port"`
		RemotePort int    `json:"remote_port"`
	}
	if err != nil || json.Unmarshal([]byte(line), &res) != nil || res.Port == 0 || !strings.HasPrefix(res.Local, "127.0.0.1:") {
		<-tp.done
		t.Fatalf("vers tunnel %v: printed %q (%v), exit %d, stderr %s", args, line, err, tp.code, tp.stderr)
	}
	tp.addr = res.Local
	t.Logf("vers tunnel %s listens on %s", strings.Join(args, " "), tp.addr)
	return tp
}

// wait waits for the tunnel's exit, for at most d.
func (tp *tunnelProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-tp.done:
		return tp.code
	case <-time.After(d):
		t.Fatalf("vers tunnel still runs after %s; stderr: %s", d, tp.stderr)
	}
	return 0
}

// exchange sends msg on a connection to addr, half-closes it and reads the
// whole answer.
func exchange(addr string, msg []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	c.(*net.TCPConn).CloseWrite()
	return io.ReadAll(c)
}

// TestTunnel: a tunnel to a server in the guest carries 20 connections at
// once, each its own; LOCAL:HOST:REMOTE reaches a host by the guest's name
// for it; a refused port is said and the tunnel stays; Ctrl-C ends a tunnel
// with 7, and killing the VM ends the others, saying so, with 1.
func TestTunnel(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "tunnel")
	p.must("run", "--vm-alias", alias)
	killed := false
	defer func() {
		if !killed {
			p.vers("kill", alias)
		}
	}()
	startEchoServer(t, p, alias, 7000)

	tun := startTunnel(t, p, alias, "0:7000")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat(fmt.Appendf(nil, "connection %02d|", i), 4096) // 64 KiB
			got, err := exchange(tun.addr, msg)
			if err != nil || !bytes.Equal(got, append([]byte("echo:"), msg...)) {
				t.Errorf("connection %d: %d bytes back, %v; want %d", i, len(got), err, 5+len(msg))
			}
		}()
	}
	wg.Wait()

	// LOCAL:HOST:REMOTE: the host as the guest names it.
	named := startTunnel(t, p, alias, "0:localhost:7000")
	if got, err := exchange(named.addr, []byte("by name")); err != nil || string(got) != "echo:by name" {
		t.Fatalf("through localhost:7000: %q, %v", got, err)
	}
	named.cmd.Process.Signal(os.Interrupt)
	if code := named.wait(t, 30*time.Second); code != 7 {
		t.Fatalf("Ctrl-C: exit %d, want 7; stderr: %s", code, named.stderr)
	}

	// Nothing listens on 7001: each connection is closed and said; the
	// tunnel stays up.
	refused := startTunnel(t, p, alias, "0:7001")
	for range 2 {
		if got, _ := exchange(refused.addr, []byte("anyone?")); len(got) != 0 {
			t.Fatalf("a refused connection answered %q", got)
		}
	}
	waitFor(t, "the refusals on stderr", 10*time.Second, func() bool {
		return strings.Count(refused.stderr.String(), "refused") == 2
	})
	t.Logf("refused: %s", refused.stderr)
	select {
	case <-refused.done:
		t.Fatalf("the tunnel ended after a refused connection: %d %s", refused.code, refused.stderr)
	default:
	}

	// The first tunnel still works; killing the VM ends both, saying so.
	if got, err := exchange(tun.addr, []byte("still")); err != nil || string(got) != "echo:still" {
		t.Fatalf("after the others: %q, %v", got, err)
	}
	p.must("kill", alias)
	killed = true
	for _, tp := range []*tunnelProc{tun, refused} {
		if code := tp.wait(t, 30*time.Second); code != 1 || !strings.Contains(tp.stderr.String(), "was killed") {
			t.Errorf("after the kill: exit %d, stderr %s; want 1 saying the VM was killed", code, tp.stderr)
		}
		if c, err := net.Dial("tcp", tp.addr); err == nil {
			c.Close()
			t.Errorf("%s still listens after its VM was killed", tp.addr)
		}
	}
}
