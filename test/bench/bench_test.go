package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/image"
	"vers/internal/qemu"
)

// BenchmarkBoot times `vers run` through the CLI binary until the VM's agent
// is ready (the command returns then), a fresh VM each iteration, killed
// after. Baselines, interleaved in the same loop, boot the same kernel and
// initramfs on the same machine with the driver's kernel command line but no
// disk (see bareModes); run/kernel is what vers adds to the kernel's own boot.
func BenchmarkBoot(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	ctx := context.Background()
	health, err := c.Health(ctx)
	if err != nil {
		b.Fatal(err)
	}
	kernel, err := image.New(imageDir, filepath.Join(binDir, "vers-agent")).Get("default.bin")
	if err != nil {
		b.Fatal(err)
	}
	bare := bareBoot{kernel: kernel, accel: health.Accel, dir: filepath.Join(h.dir, "bare")}

	var run, server samples
	base := make([]samples, len(bareModes))
	baselines := func() {
		for j, m := range bareModes {
			base[j] = append(base[j], bare.run(b, m))
		}
	}
	for i := 0; i < b.N; i++ {
		// Alternate the order so neither side always runs on a warmer cache.
		if i%2 == 0 {
			baselines()
		}
		out, d := h.must("run", "--vm-alias", fmt.Sprintf("boot-%d", i), "--format", "json")
		var v api.VM
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			b.Fatalf("vers run --format json: %v: %q", err, out)
		}
		if v.State != api.StateRunning {
			b.Fatalf("vers run returned VM %s in state %q", v.ID, v.State)
		}
		run = append(run, d)
		server = append(server, time.Duration(v.BootMillis)*time.Millisecond)
		h.must("kill", v.ID)
		if i%2 == 1 {
			baselines()
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(run.mean()), "ms/op")
	report(b, "run", run)
	report(b, "versd-boot", server)
	for j, m := range bareModes {
		report(b, m.name, base[j])
		b.ReportMetric(ratio(run.percentile(50), base[j].percentile(50)), "run/"+m.name+"-p50")
		b.ReportMetric(ratio(run.percentile(90), base[j].percentile(90)), "run/"+m.name+"-p90")
	}
}

// bareMode is one way to boot the kernel without vers and make QEMU exit.
type bareMode struct {
	name    string
	cmdline string // appended to the driver's kernel command line
	want    string // the console line that proves the boot ended as meant
}

// bareModes: in both the kernel unpacks the initramfs as in vers' boots and
// then panics; panic=-1 reboots at once, and -no-reboot turns that into
// QEMU's exit.
var bareModes = []bareMode{
	// rdinit names a file the initramfs lacks: the kernel skips it, finds no
	// root device and panics. The project's reference: the kernel alone.
	{"kernel", "rdinit=/vers-bench-no-init", "VFS: Unable to mount root fs"},
	// The initramfs' /init (the agent) runs with -version and exits, so the
	// kernel also finishes its init (freeing init memory, write-protecting
	// itself) and starts user space before it panics.
	{"kernel-init", "-- -version", "Attempted to kill init"},
}

// bareBoot boots the kernel image with no disk and no agent session.
type bareBoot struct {
	kernel image.Info
	accel  string
	dir    string
}

// run boots once in the foreground and returns the time until QEMU exits.
func (bb bareBoot) run(b *testing.B, m bareMode) time.Duration {
	b.Helper()
	os.RemoveAll(bb.dir)
	if err := os.MkdirAll(bb.dir, 0o700); err != nil {
		b.Fatal(err)
	}
	cfg, err := qemu.Config{
		Name:    "bench-bare",
		Dir:     bb.dir,
		MemMiB:  benchMemMiB,
		VCPUs:   benchVCPUs,
		Kernel:  bb.kernel.Path,
		Initrd:  bb.kernel.Initrd,
		Cmdline: m.cmdline,
		Accel:   bb.accel,
	}.WithHostDefaults()
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	bin, err := qemu.Binary()
	if err != nil {
		b.Fatal(err)
	}
	var args []string
	for _, a := range cfg.Args() {
		if a != "-daemonize" { // wait for the exit in the foreground
			args = append(args, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("bare kernel boot (%s): %v\n%s", m.name, err, stderr.String())
	}
	serial, _ := os.ReadFile(cfg.SerialLog())
	if !bytes.Contains(serial, []byte(m.want)) {
		tail := serial
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		b.Fatalf("bare kernel boot (%s) ended without %q; console:\n%s", m.name, m.want, tail)
	}
	return d
}

// BenchmarkExec times `true` in one running VM per iteration: through the Go
// client (client.Exec: WebSocket to versd, agent over virtio-serial), through
// the CLI binary (`vers execute VM true`, process start included), and through
// the client with an argv instead of a shell string (no bash in the guest).
// Baselines in the same run: `bash -c true` spawned on the host in the same
// loop, and the guest's own cost of a `bash -c true` forked by a bash loop
// inside the guest (timed by the guest before and after the loop). Under TCG
// that guest cost dominates the round trip; bash forking is heavier than the
// agent's spawn, so it is an upper bound of the guest's share, not an exact one.
//
// A second daemon, started with VERS_EXEC_ASLR=on, runs the same VM with
// the programs it starts randomized (the setting under KVM), and its CLI
// execute is timed in the same loop: the baseline of the fixed layout TCG
// guests get by default.
func BenchmarkExec(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	out, _ := h.must("run", "--vm-alias", "exec", "-q")
	id := strings.TrimSpace(first(out))
	ctx := context.Background()
	hr := newHome(b)
	hr.extra = []string{"VERS_EXEC_ASLR=on"}
	defer hr.close()
	cr := hr.start()
	out, _ = hr.must("run", "--vm-alias", "exec-aslr", "-q")
	idr := strings.TrimSpace(first(out))
	cliExecASLR := func() time.Duration {
		_, d := hr.must("execute", idr, "true")
		return d
	}

	clientExec := func(req api.ExecRequest) time.Duration {
		start := time.Now()
		res, err := c.Exec(ctx, id, req, client.ExecIO{})
		d := time.Since(start)
		if err != nil {
			b.Fatalf("client exec %+v: %v", req, err)
		}
		if res.ExitCode != 0 {
			b.Fatalf("client exec %+v: exit %d", req, res.ExitCode)
		}
		return d
	}
	shellTrue := api.ExecRequest{Command: "true"}
	argvTrue := api.ExecRequest{Argv: []string{"true"}}
	cliExec := func() time.Duration {
		_, d := h.must("execute", id, "true")
		return d
	}
	hostExec := func() time.Duration {
		start := time.Now()
		if err := exec.Command("bash", "-c", "true").Run(); err != nil {
			b.Fatalf("host bash -c true: %v", err)
		}
		return time.Since(start)
	}
	// The first exec of a session pays for connections and page faults
	// that every later one is spared; leave it out.
	hostExec()
	clientExec(shellTrue)
	clientExec(argvTrue)
	cliExec()
	cliExecASLR()

	guest := samples{guestBashSpawn(b, c, id)}
	guestASLR := samples{guestBashSpawn(b, cr, idr)}
	var viaClient, viaArgv, viaCLI, viaCLIASLR, host samples
	for i := 0; i < b.N; i++ {
		host = append(host, hostExec())
		viaClient = append(viaClient, clientExec(shellTrue))
		viaArgv = append(viaArgv, clientExec(argvTrue))
		viaCLI = append(viaCLI, cliExec())
		viaCLIASLR = append(viaCLIASLR, cliExecASLR())
	}
	guest = append(guest, guestBashSpawn(b, c, id))
	guestASLR = append(guestASLR, guestBashSpawn(b, cr, idr))

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(viaClient.mean()), "ms/op")
	report(b, "client", viaClient)
	report(b, "client-argv", viaArgv)
	report(b, "cli", viaCLI)
	report(b, "cli-aslr", viaCLIASLR)
	report(b, "host", host)
	b.ReportMetric(ms(guest.mean()), "guest-bash-ms")
	b.ReportMetric(ms(guestASLR.mean()), "guest-bash-aslr-ms")
	b.ReportMetric(ratio(viaCLI.percentile(50), viaCLIASLR.percentile(50)), "cli/cli-aslr-p50")
	p50 := viaClient.percentile(50)
	b.ReportMetric(ratio(p50, host.percentile(50)), "client/host-p50")
	b.ReportMetric(ratio(viaCLI.percentile(50), host.percentile(50)), "cli/host-p50")
	b.ReportMetric(ratio(p50, guest.mean()), "client/guest-bash-p50")
}

// guestSpawns is how many `bash -c true` the guest baseline averages over.
const guestSpawns = 20

// guestBashSpawn returns what one `bash -c true` costs inside the guest,
// timed by the guest's clock over guestSpawns runs.
func guestBashSpawn(b *testing.B, c *client.Client, id string) time.Duration {
	b.Helper()
	script := fmt.Sprintf(`n=%d; s=$(date +%%s%%N); i=0
while [ $i -lt $n ]; do bash -c true; i=$((i+1)); done
e=$(date +%%s%%N); echo $(( (e-s)/n ))`, guestSpawns)
	var out bytes.Buffer
	res, err := c.Exec(context.Background(), id, api.ExecRequest{Command: script}, client.ExecIO{Stdout: &out})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("guest baseline: exit %d, %v", res.ExitCode, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil || ns <= 0 {
		b.Fatalf("guest baseline printed %q", out.String())
	}
	return time.Duration(ns)
}

// first returns the first line of s.
func first(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// BenchmarkImageBuildWarm times `vers image build` when every image is
// already built and current, against `vers image ls` on the same cache (the
// CLI starting and reading the image metadata, building nothing).
func BenchmarkImageBuildWarm(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	h.must("image", "build") // loads the files into the page cache
	var build, ls samples
	for i := 0; i < b.N; i++ {
		_, d := h.must("image", "ls")
		ls = append(ls, d)
		_, d = h.must("image", "build")
		build = append(build, d)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(build.mean()), "ms/op")
	report(b, "warm", build)
	report(b, "ls", ls)
	b.ReportMetric(ratio(build.percentile(50), ls.percentile(50)), "warm/ls-p50")
}

// BenchmarkImageBuildCold times `vers image build` into an empty image
// directory (kernel package download and extraction, debootstrap, ext4 image),
// then the same command again with everything cached. It downloads from the
// Debian mirror and takes about a minute an iteration, so it runs only with
// VERS_BENCH_COLD=1; use -benchtime=1x.
func BenchmarkImageBuildCold(b *testing.B) {
	if os.Getenv("VERS_BENCH_COLD") != "1" {
		b.Skip("cold image builds download Debian packages and take about a minute; set VERS_BENCH_COLD=1 (with -benchtime=1x) to run them")
	}
	requireVMs(b)
	var cold, warm samples
	for i := 0; i < b.N; i++ {
		// versd owns the image directory it started with: an empty one
		// needs a daemon of its own.
		h := newHome(b)
		h.images = filepath.Join(h.dir, "images")
		_, d := h.must("image", "build")
		cold = append(cold, d)
		for j := 0; j < 3; j++ {
			_, d = h.must("image", "build")
			warm = append(warm, d)
		}
		h.close()
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cold.mean().Seconds(), "cold-s")
	report(b, "warm", warm)
	b.ReportMetric(ratio(cold.mean(), warm.percentile(50)), "cold/warm")
}

// BenchmarkVersdMemory reports the resident (RSS) and proportional (PSS)
// memory of an idle versd with no VM and with one running VM, and for
// reference the PSS of that VM's QEMU. Each state is sampled b.N times,
// 200 ms apart, after the daemon has been left alone for a second; the
// medians are reported.
func BenchmarkVersdMemory(b *testing.B) {
	requireVMs(b)
	h := newHome(b)
	defer h.close()
	c := h.start()
	ctx := context.Background()
	health, err := c.Health(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if health.VMs != 0 {
		b.Fatalf("a fresh daemon reports %d VMs", health.VMs)
	}
	pid := health.PID
	if pidFile := h.daemonPID(); pidFile != pid {
		b.Fatalf("versd reports pid %d, its pid file says %d", pid, pidFile)
	}

	// Idle means after start-up or boot work has finished; there is no
	// event for that, so the daemon is left alone for a fixed time.
	const settle = time.Second
	sample := func(pid int) memUsage {
		b.Helper()
		var all []memUsage
		for i := 0; i < b.N; i++ {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			m, err := readMem(pid)
			if err != nil {
				b.Fatalf("memory of pid %d: %v", pid, err)
			}
			all = append(all, m)
		}
		return medianMem(all)
	}

	time.Sleep(settle)
	idle0 := sample(pid)

	out, _ := h.must("run", "--vm-alias", "mem", "--format", "json")
	var v api.VM
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		b.Fatalf("vers run --format json: %v: %q", err, out)
	}
	time.Sleep(settle)
	idle1 := sample(pid)
	vm := sample(v.PID)

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(idle0.rssMiB(), "versd-0vm-rss-MiB")
	b.ReportMetric(idle0.pssMiB(), "versd-0vm-pss-MiB")
	b.ReportMetric(idle1.rssMiB(), "versd-1vm-rss-MiB")
	b.ReportMetric(idle1.pssMiB(), "versd-1vm-pss-MiB")
	b.ReportMetric(vm.pssMiB(), "qemu-pss-MiB")
	if vm.PssKiB > 0 {
		b.ReportMetric(float64(idle1.PssKiB)/float64(vm.PssKiB), "versd/qemu-pss")
	}
}

// medianMem takes the median of RSS and of PSS separately.
func medianMem(all []memUsage) memUsage {
	rss, pss := make([]int64, len(all)), make([]int64, len(all))
	for i, m := range all {
		rss[i], pss[i] = m.RssKiB, m.PssKiB
	}
	return memUsage{RssKiB: median(rss), PssKiB: median(pss)}
}
