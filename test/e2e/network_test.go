package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loopbackService is an HTTP server on the host's 127.0.0.1 that serves a
// secret and counts the requests that reach it.
type loopbackService struct {
	port   int
	secret string
	hits   atomic.Int64
}

func startLoopbackService(t *testing.T) *loopbackService {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	s := &loopbackService{secret: "secret-" + hex.EncodeToString(b)}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		fmt.Fprintln(w, s.secret)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// It does serve the host.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", s.port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s.hits.Swap(0) != 1 {
		t.Fatal("the loopback service did not count the host's own request")
	}
	return s
}

// hostAddrs is every IPv4 address of the host that is not loopback.
func hostAddrs(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// fetchScript tries, in the guest, an HTTP GET to every address on port,
// each bounded by a few seconds, and prints whatever comes back.
func fetchScript(port int, addrs []string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, `echo "== %[1]s"; timeout 5 bash -c 'exec 3<>/dev/tcp/%[1]s/%[2]d && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>&1; `, a, port)
	}
	return b.String() + "true"
}

// expectNoLoopback shows that the guest vm reaches the host's loopback
// service by none of the host's addresses.
func expectNoLoopback(t *testing.T, p *project, vm string, svc *loopbackService) {
	t.Helper()
	targets := append([]string{"10.0.2.2", "127.0.0.1"}, hostAddrs(t)...)
	out := p.must("execute", vm, fetchScript(svc.port, targets))
	t.Logf("%s fetching the host's loopback service:\n%s", vm, out)
	if strings.Contains(out, svc.secret) || svc.hits.Load() != 0 {
		t.Fatalf("guest %s reached the host's 127.0.0.1:%d (%d requests):\n%s", vm, svc.port, svc.hits.Load(), out)
	}
}

// expectOutbound shows the guest resolves names and downloads from the
// Debian mirror.
func expectOutbound(t *testing.T, p *project, vm string) {
	t.Helper()
	r := p.vers("execute", "--timeout", "120s", vm, "apt-get update 2>&1 | tail -3")
	if r.code != 0 {
		t.Fatalf("apt-get update in %s: exit %d\n%s%s", vm, r.code, r.out, r.err)
	}
	t.Logf("apt-get update in %s (%.1fs): %s", vm, r.dur.Seconds(), strings.TrimSpace(r.out))
}

// passtOf is the PID of the passt the VM's directory names ("PID START"),
// 0 if that process no longer runs.
func passtOf(home, id string) int {
	b, err := os.ReadFile(filepath.Join(home, "vms", id, "passt.pid"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The start time is field 22; fields follow the command name's ')'.
	st := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(st) < 20 || st[0] == "Z" || st[19] != f[1] {
		return 0
	}
	return pid
}

// TestNetworkIsolated: a guest connects out (DNS and the Debian mirror) but
// reaches no host loopback service, by 10.0.2.2, 127.0.0.1 or any host
// address, and no other guest; a branch child is the same, with a network
// of its own; the network ends with the VM, after a daemon restart too.
func TestNetworkIsolated(t *testing.T) {
	requireVMs(t)
	svc := startLoopbackService(t)
	p := newProject(t)
	p.must("init")
	a := uniqueAlias(t, "neta")
	p.must("run", "--vm-alias", a)
	av, _ := p.find(a)
	expectNoLoopback(t, p, a, svc)
	expectOutbound(t, p, a)
	if passtOf(versHome, av.ID) == 0 {
		t.Fatalf("VM %s has no network process of its own", a)
	}

	// Root in the guest routes 127.0.0.1 out through eth0: the network
	// behind it must not hand that to the host's loopback either. (In a
	// child of its own: this breaks the guest's loopback.)
	b := p.branch(a, "--alias", a+"-k")
	kid := b.Children[0]
	if pk, pa := passtOf(versHome, kid.ID), passtOf(versHome, av.ID); pk == 0 || pk == pa {
		t.Fatalf("child's network process %d, parent's %d: want one of its own", pk, pa)
	}
	expectOutbound(t, p, kid.Alias)
	expectNoLoopback(t, p, kid.Alias, svc)
	route := "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; " +
		"ip route del local 127.0.0.0/8 table local; ip route del local 127.0.0.1 table local 2>/dev/null; " +
		"ip route add 127.0.0.1/32 via 10.0.2.2 dev eth0 src 10.0.2.15 && ip route get 127.0.0.1 && "
	out := p.must("execute", kid.Alias, route+fetchScript(svc.port, []string{"127.0.0.1"}))
	t.Logf("127.0.0.1 routed through eth0:\n%s", out)
	if !strings.Contains(out, "dev eth0") || strings.Contains(out, svc.secret) || svc.hits.Load() != 0 {
		t.Fatalf("guest reached the host's loopback through its network (%d requests):\n%s", svc.hits.Load(), out)
	}

	// Two guests: one listens on every address, the other cannot reach it
	// by its address (every guest has the same, its own) or the host's.
	p.must("execute", a, `nohup setsid perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 7777, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "hello-from-a\n"; close $c }' >/dev/null 2>&1 &`)
	waitFor(t, "the listener in "+a, 10*time.Second, func() bool {
		return strings.Contains(p.vers("execute", a, "timeout 2 bash -c 'cat < /dev/tcp/10.0.2.15/7777'").out, "hello-from-a")
	})
	peers := append([]string{"10.0.2.15", "10.0.2.2"}, hostAddrs(t)...)
	var probe strings.Builder
	for _, addr := range peers {
		fmt.Fprintf(&probe, `echo "== %[1]s"; timeout 5 bash -c 'cat < /dev/tcp/%[1]s/7777' 2>&1; `, addr)
	}
	c := uniqueAlias(t, "netc")
	p.must("run", "--vm-alias", c)
	out = p.must("execute", c, probe.String()+"true")
	t.Logf("%s connecting to %s's listener:\n%s", c, a, out)
	if strings.Contains(out, "hello-from-a") {
		t.Fatalf("guest %s reached guest %s:\n%s", c, a, out)
	}

	// The network survives a daemon restart and ends with the VM.
	pa := passtOf(versHome, av.ID)
	old := daemonPID(t)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "versd to die", 5*time.Second, func() bool { return syscall.Kill(old, 0) != nil })
	if got := passtOf(versHome, av.ID); got != pa {
		t.Fatalf("network process %d of %s gone with the daemon (now %d)", pa, a, got)
	}
	expectOutbound(t, p, a)
	p.must("kill", "-r", a)
	p.must("kill", c)
	waitFor(t, "the network processes to end", 10*time.Second, func() bool {
		return syscall.Kill(pa, 0) != nil
	})
	for _, id := range []string{av.ID, kid.ID} {
		if pid := passtOf(versHome, id); pid != 0 {
			t.Errorf("network process %d of killed VM %s still runs", pid, id)
		}
	}
}

// TestNetworkNone: [network] mode = "none" gives a VM no network device,
// and commands still run; a bad mode is refused as invalid input.
func TestNetworkNone(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.writeConfig(512, 1, 1024)
	f, err := os.OpenFile(filepath.Join(p.dir, "vers.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "\n[network]\nmode = \"none\"\n")
	f.Close()
	p.expect(5, "network", "run", "--network", "bogus")

	alias := uniqueAlias(t, "netnone")
	p.must("run", "--vm-alias", alias)
	v, _ := p.find(alias)
	if pid := passtOf(versHome, v.ID); pid != 0 {
		t.Errorf("VM without a network has a network process %d", pid)
	}
	out := p.must("execute", "ip -o link; echo routes:; ip route; echo end; timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/80' 2>&1; echo connect=$?")
	t.Logf("no network:\n%s", out)
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") || !strings.Contains(out, "routes:\nend") ||
		!strings.Contains(out, "unreachable") || strings.Contains(out, "connect=0") {
		t.Fatalf("VM with network none has a network:\n%s", out)
	}
	// A child keeps its parent's network: none.
	b := p.branch("--alias", alias+"-k")
	if out := p.must("execute", b.Children[0].Alias, "ip -o link"); strings.Contains(out, "eth0") {
		t.Fatalf("child of a VM without network has one:\n%s", out)
	}
	p.must("kill", "-r", alias)
}
