package e2e

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
)

// tcpHold is run in a VM before it is branched: it downloads a large file
// of the Debian mirror slowly, 1 KiB at a time, so that its connection stays
// open and busy across the branch. It counts the chunks in /root/tcp.n and
// writes how it ended to /root/tcp.result: a read error (a child's copy of
// the connection must be reset: its peer went on with the parent), or the
// end of the file. A copy nobody resets would wait for ever: with nothing
// to send, it never learns its peer knows nothing of it.
const tcpHold = `exec 3<>/dev/tcp/deb.debian.org/80 || { echo "connect failed" > /root/tcp.result; exit; }
printf 'GET /debian/dists/bookworm/main/binary-amd64/Packages.xz HTTP/1.1\r\nHost: deb.debian.org\r\nConnection: close\r\n\r\n' >&3
n=0
while :; do
	got=$(dd bs=1024 count=1 status=none 2>/root/tcp.err <&3 | wc -c)
	if [ -s /root/tcp.err ]; then echo "read failed after $n chunks: $(cat /root/tcp.err)" > /root/tcp.result; exit; fi
	if [ "$got" = 0 ]; then echo "end of file after $n chunks" > /root/tcp.result; exit; fi
	n=$((n+1)); echo $n > /root/tcp.n
	sleep 0.05
done
`

// TestCloneContract checks what docs/branching.md promises a branch child
// ("What a child can rely on"): its clock is the host's within 100 ms right
// after the branch; its hostname is its alias; its /etc/machine-id is its
// own; a TCP connection its parent held to another machine is reset in it
// at once while the parent's goes on; and every child reaches the network
// at the same time. (Siblings reading different random bytes is checked by
// TestBranchConsistency.)
func TestCloneContract(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	root := uniqueAlias(t, "ctr")
	p.must("run", "--vm-alias", root)
	defer p.vers("kill", root, "-r")

	if r := p.versIn(tcpHold, "execute", "-i", root, "cat > /root/tcp.sh"); r.code != 0 {
		t.Fatalf("writing the script: %s", r.err)
	}
	p.must("execute", root, "rm -f /root/tcp.n /root/tcp.result /root/tcp.err; nohup bash /root/tcp.sh >/dev/null 2>&1 &")
	chunks := func(vm string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(p.vers("execute", vm, "cat /root/tcp.n").out))
		return n
	}
	ended := func(vm string) (string, bool) {
		r := p.vers("execute", vm, "cat /root/tcp.result")
		return strings.TrimSpace(r.out), r.code == 0
	}
	waitFor(t, "the download from the mirror to begin", 60*time.Second, func() bool {
		_, done := ended(root)
		return done || chunks(root) >= 5
	})
	if res, done := ended(root); done {
		t.Fatalf("the download in the guest ended before the branch: %s", res)
	}

	b := p.branch(root, "--alias", root+"-k", "--count", "2")
	kids := []string{b.Children[0].Alias, b.Children[1].Alias}

	// The clock, asked of each child's agent at once.
	for _, vm := range append([]string{root}, kids...) {
		var info api.VMInfo
		decodeJSON(t, "info", p.must("info", vm, "--format", "json"), &info)
		if info.Clock == nil {
			t.Fatalf("%s: vers info shows no guest clock", vm)
		}
		t.Logf("%s: guest clock %+.1f ms (read in %.1f ms)", vm, info.Clock.OffsetMillis, info.Clock.RTTMillis)
		if math.Abs(info.Clock.OffsetMillis) > 100 {
			t.Errorf("%s: guest clock %+.1f ms from the host's, want within 100 ms", vm, info.Clock.OffsetMillis)
		}
	}

	// Hostname and machine id.
	ids := map[string]string{}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, vm := range append([]string{root}, kids...) {
		out := strings.Fields(p.must("execute", vm, "hostname; cat /etc/hostname; cat /etc/machine-id"))
		if len(out) != 3 || out[0] != vm || out[1] != vm {
			t.Errorf("%s: hostname and /etc/hostname say %q", vm, out)
			continue
		}
		if !hex32.MatchString(out[2]) {
			t.Errorf("%s: machine id %q", vm, out[2])
		}
		if other, dup := ids[out[2]]; dup {
			t.Errorf("%s has the machine id of %s: %s", vm, other, out[2])
		}
		ids[out[2]] = vm
	}

	// The connection: reset in each child, still carrying data in the
	// parent.
	for _, vm := range kids {
		var res string
		waitFor(t, vm+"'s copy of the connection to end", 60*time.Second, func() bool {
			var done bool
			res, done = ended(vm)
			return done
		})
		if !strings.Contains(res, "read failed") || !strings.Contains(strings.ToLower(res), "reset") {
			t.Errorf("%s's copy of the connection: %q, want a reset", vm, res)
		}
	}
	at := chunks(root)
	waitFor(t, "the parent's download to go on", 60*time.Second, func() bool {
		if res, done := ended(root); done {
			t.Fatalf("the parent's connection ended: %s", res)
		}
		return chunks(root) >= at+10
	})
	p.must("execute", root, "pkill -f 'bash /root/tcp[.]sh'; true")

	// Outbound networking in every VM at once.
	vms := append([]string{root}, kids...)
	var wg sync.WaitGroup
	began, finished := make([]time.Time, len(vms)), make([]time.Time, len(vms))
	outs := make([]result, len(vms))
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began[i] = time.Now()
			outs[i] = p.vers("execute", vm, `timeout 30 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80 && printf "HEAD /debian/ HTTP/1.0\r\nHost: deb.debian.org\r\n\r\n" >&3 && head -1 <&3; sleep 1'`)
			finished[i] = time.Now()
		}()
	}
	wg.Wait()
	for i, vm := range vms {
		if !strings.HasPrefix(outs[i].out, "HTTP/1.") {
			t.Errorf("%s: no reply from the mirror: %q %s", vm, outs[i].out, outs[i].err)
		}
	}
	if last, first := slices.MaxFunc(began, time.Time.Compare), slices.MinFunc(finished, time.Time.Compare); !last.Before(first) {
		t.Errorf("the requests did not run at once: the last began %s after the first ended", last.Sub(first))
	}
}
