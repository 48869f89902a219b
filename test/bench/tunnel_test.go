package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vers/api"
	"vers/client"
)

// guestSink is a server for the guest in the image's perl (perl-base is in
// every Debian): it reads each connection to its half-close, counting, and
// answers the count.
const guestSink = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1) or die "listen: $!";
open(my $r, ">", "/tmp/sink.ready"); close $r;
while (my $c = $s->accept) {
	my ($n, $buf) = (0, "");
	while (my $k = sysread($c, $buf, 1 << 16)) { $n += $k }
	print $c "$n\n";
	close $c;
}
`

// tunnelMiB is what one iteration sends (VERS_BENCH_TUNNEL_MIB).
func tunnelMiB() int {
	if n, err := strconv.Atoi(os.Getenv("VERS_BENCH_TUNNEL_MIB")); err == nil && n > 0 {
		return n
	}
	return 64
}

// BenchmarkTunnel measures a bulk transfer through `vers tunnel` (the CLI
// listening on the host's loopback, versd, the agent channel, the guest's
// loopback) to a sink in the guest, and, in the same run, the same
// transfer over a direct TCP connection on the host's loopback to a sink
// on the host: the baseline. A second reference in the same run: the same
// bytes as the standard input of ` + "`cat > /dev/null`" + ` in the guest, through
// the client's exec: the agent channel itself, without the tunnel; and
// the tunnel through the Go client, without the CLI process. Each
// iteration sends tunnelMiB MiB and waits for the sink's count of what it
// received (for the exec, its exit).
func BenchmarkTunnel(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	out, _ := h.must("run", "--vm-alias", "tunnel", "-q")
	id := strings.TrimSpace(first(out))
	ctx := context.Background()
	if err := c.WriteFile(ctx, id, "/root/sink.pl", 0o644, strings.NewReader(guestSink)); err != nil {
		b.Fatal(err)
	}
	var log bytes.Buffer
	res, err := c.Exec(ctx, id, api.ExecRequest{Command: `nohup perl /root/sink.pl 7100 >/root/sink.log 2>&1 &
for i in $(seq 300); do [ -e /tmp/sink.ready ] && exit 0; sleep 0.1; done; cat /root/sink.log; exit 1`}, client.ExecIO{Stdout: &log, Stderr: &log})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("sink in the guest: exit %d, %v: %s", res.ExitCode, err, log.String())
	}
	tunnelAddr := startTunnel(b, h, id, "0:7100")
	hostAddr := hostSink(b)

	size := int64(tunnelMiB()) << 20
	send(b, tunnelAddr, 1<<20) // the first connection pays for the session's first stream
	var viaTunnel, viaClient, direct, viaExec samples
	for i := 0; i < b.N; i++ {
		direct = append(direct, send(b, hostAddr, size))
		viaTunnel = append(viaTunnel, send(b, tunnelAddr, size))
		viaClient = append(viaClient, clientTunnel(b, c, id, 7100, size))
		viaExec = append(viaExec, execStdin(b, c, id, size))
	}
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(size>>20), "MiB/op")
	b.ReportMetric(mbps(viaTunnel.percentile(50)), "tunnel-MB/s")
	b.ReportMetric(mbps(direct.percentile(50)), "host-tcp-MB/s")
	b.ReportMetric(mbps(viaClient.percentile(50)), "client-tunnel-MB/s")
	b.ReportMetric(mbps(viaExec.percentile(50)), "exec-stdin-MB/s")
	b.ReportMetric(float64(direct.percentile(50))/float64(viaTunnel.percentile(50)), "tunnel/host-tcp")
	b.ReportMetric(float64(viaExec.percentile(50))/float64(viaTunnel.percentile(50)), "tunnel/exec-stdin")
}

// clientTunnel sends size bytes to the sink on port in VM id through the
// Go client's tunnel (no CLI process, no TCP on the host) and returns how
// long it took until the count came back.
func clientTunnel(b *testing.B, c *client.Client, id string, port int, size int64) time.Duration {
	b.Helper()
	start := time.Now()
	tc, err := c.Tunnel(context.Background(), id, "", port)
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	if _, err := io.Copy(tc, io.LimitReader(repeatReader{}, size)); err != nil {
		b.Fatalf("client tunnel: %v", err)
	}
	tc.CloseWrite()
	reply, err := io.ReadAll(tc)
	d := time.Since(start)
	if err != nil || strings.TrimSpace(string(reply)) != strconv.FormatInt(size, 10) {
		b.Fatalf("sink through the client's tunnel counted %q (%v), want %d", reply, err, size)
	}
	return d
}

// execStdin streams size bytes into ` + "`cat > /dev/null`" + ` in VM id and
// returns how long it took until the exit.
func execStdin(b *testing.B, c *client.Client, id string, size int64) time.Duration {
	b.Helper()
	data := io.LimitReader(repeatReader{}, size)
	start := time.Now()
	res, err := c.Exec(context.Background(), id, api.ExecRequest{Command: "cat > /dev/null"}, client.ExecIO{Stdin: data})
	d := time.Since(start)
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("exec stdin: exit %d, %v", res.ExitCode, err)
	}
	return d
}

// repeatReader reads as an endless run of the same bytes.
type repeatReader struct{}

func (repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "0123456789abcdef"[i%16]
	}
	return len(p), nil
}

// startTunnel runs `vers tunnel VM SPEC --format json` until the benchmark
// ends and returns the address it listens on.
func startTunnel(b *testing.B, h *home, vm, spec string) string {
	b.Helper()
	cmd := exec.Command(filepath.Join(binDir, "vers"), "tunnel", vm, spec, "--format", "json")
	cmd.Dir = h.project
	cmd.Env = h.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	var res api.TunnelResult
	if err != nil || json.Unmarshal([]byte(line), &res) != nil || res.Local == "" {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("vers tunnel printed %q (%v): %s", line, err, stderr.String())
	}
	return res.Local
}

// hostSink serves the guest sink's protocol on the host's loopback.
func hostSink(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "%d\n", n)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// send writes size bytes to the sink at addr, half-closes, and returns how
// long it took until the sink's count came back, checking it.
func send(b *testing.B, addr string, size int64) time.Duration {
	b.Helper()
	buf := bytes.Repeat([]byte("0123456789abcdef"), 256<<10/16)
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			b.Fatalf("send to %s: %v", addr, err)
		}
		left -= n
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	d := time.Since(start)
	if err != nil || strings.TrimSpace(string(reply)) != strconv.FormatInt(size, 10) {
		b.Fatalf("sink at %s counted %q (%v), want %d", addr, reply, err, size)
	}
	return d
}
