package qemu

import (
	"errors"
	"strings"
	"testing"
)

func baseConfig() Config {
	return Config{
		Name:   "vm1",
		Dir:    "/v/vm1",
		MemMiB: 256,
		VCPUs:  2,
		Kernel: "/img/vmlinux",
		Initrd: "/img/initrd",
		Disk:   "/v/vm1/root.qcow2",
		Accel:  "tcg",
		TSCkHz: 2596130,
	}
}

// Each line of an expected command line is one option and its value.
const (
	head = `-nodefaults
-no-user-config
-display none
-no-reboot
-name vm1`
	kernel = `-kernel /img/vmlinux
-initrd /img/initrd
-append console=ttyS0 reboot=t panic=-1 tsc_early_khz=2596130 tsc=reliable`
	sockets = `-chardev socket,id=qmp,path=/v/vm1/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-chardev file,id=console,path=/v/vm1/serial.log,append=on
-serial chardev:console`
	disk = `-blockdev driver=qcow2,node-name=root,discard=unmap,file.driver=file,file.filename=/v/vm1/root.qcow2
-device virtio-blk-device,drive=root,id=disk0`
	nic = `-netdev stream,id=net0,server=off,addr.type=fd,addr.str=3
-device virtio-net-device,netdev=net0,id=nic0`
	rest = `-object rng-random,id=rng0,filename=/dev/urandom
-device virtio-rng-device,rng=rng0,id=rngdev0
-device virtio-serial-device,id=vser0
-chardev socket,id=agent,path=/v/vm1/agent.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=agent,name=vers.agent,id=agent0
-D /v/vm1/qemu.log
-pidfile /v/vm1/qemu.pid
-daemonize
-global migration.send-configuration=off`
	devices = nic + "\n" + rest
)

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"anonymous RAM, tcg", func(*Config) {}, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + "\n" + devices},
		{"loads a state with the configuration section", func(c *Config) { c.StateConfig = true }, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + "\n" + strings.TrimSuffix(devices, "\n-global migration.send-configuration=off")},
		{"kvm", func(c *Config) { c.Accel = "kvm" }, head + `
-machine microvm,memory-backend=mem
-accel kvm
-cpu host
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + "\n" + devices},
		{"shared memory file", func(c *Config) { c.MemPath = "/dev/shm/vers/vm1.ram" }, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/vers/vm1.ram,share=on
` + kernel + "\n" + sockets + "\n" + disk + "\n" + devices},
		{"private memory file, incoming", func(c *Config) {
			c.MemPath, c.MemPrivate, c.Incoming = "/dev/shm/vers/snap.ram", true, true
		}, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/vers/snap.ram,share=off
` + kernel + "\n" + sockets + "\n" + disk + "\n" + devices + `
-incoming defer`},
		{"extra cmdline, no initrd, no disk", func(c *Config) {
			c.Initrd, c.Disk, c.Cmdline = "", "", "  init=/sbin/vers-agent quiet "
		}, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
-kernel /img/vmlinux
-append console=ttyS0 reboot=t panic=-1 tsc_early_khz=2596130 tsc=reliable init=/sbin/vers-agent quiet
` + sockets + "\n" + devices},
		{"no kernel, commas in paths", func(c *Config) {
			c.Kernel, c.Initrd, c.Dir, c.Disk = "", "", "/v/a,b", "/v/a,b/root.qcow2"
		}, strings.ReplaceAll(head+`
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
`+sockets+"\n"+disk+"\n"+devices, "/v/vm1/", "/v/a,,b/")},
		{"network isolated, named", func(c *Config) { c.Network = NetIsolated }, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + "\n" + devices},
		{"network none: no device", func(c *Config) { c.Network = NetNone }, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + "\n" + rest},
		{"network unplugged: the device, nothing behind it", func(c *Config) { c.Network = NetUnplugged }, head + `
-machine microvm,memory-backend=mem
-accel tcg
-cpu max
-smp 2
-m 256M
-object memory-backend-ram,id=mem,size=256M
` + kernel + "\n" + sockets + "\n" + disk + `
-netdev hubport,id=net0,hubid=0
-device virtio-net-device,netdev=net0,id=nic0
` + rest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.edit(&c)
			got := lines(c.Args())
			want := tt.want
			if tt.name == "no kernel, commas in paths" {
				// -pidfile is a plain path argument, not key=value: no escaping.
				want = strings.ReplaceAll(want, "-pidfile /v/a,,b/", "-pidfile /v/a,b/")
				want = strings.ReplaceAll(want, "-D /v/a,,b/", "-D /v/a,b/")
			}
			if got != want {
				t.Errorf("Args() mismatch\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// lines renders a command line one option (with its value, if any) a line.
func lines(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			if strings.HasPrefix(a, "-") {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(a)
	}
	return b.String()
}

func TestArgsDeterministic(t *testing.T) {
	// A child is started from a copy of its parent's Config: equal Configs
	// give the same command line.
	c, d := baseConfig(), baseConfig()
	if got, want := lines(d.Args()), lines(c.Args()); got != want {
		t.Fatalf("Args of equal configs differ:\n%s\n%s", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"valid without kernel or disk", func(c *Config) { c.Kernel, c.Initrd, c.Disk, c.TSCkHz = "", "", "", 0 }, ""},
		{"valid kvm, private memory", func(c *Config) { c.Accel, c.MemPath, c.MemPrivate = "kvm", "/dev/shm/x", true }, ""},
		{"empty name", func(c *Config) { c.Name = "" }, "name"},
		{"name with comma", func(c *Config) { c.Name = "a,b" }, "name"},
		{"name with space", func(c *Config) { c.Name = "a b" }, "name"},
		{"name starting with dash", func(c *Config) { c.Name = "-vm" }, "name"},
		{"name too long", func(c *Config) { c.Name = strings.Repeat("a", 65) }, "name"},
		{"relative dir", func(c *Config) { c.Dir = "vms/vm1" }, "absolute"},
		{"empty dir", func(c *Config) { c.Dir = "" }, "absolute"},
		{"dir too long for socket", func(c *Config) { c.Dir = "/" + strings.Repeat("d", 100) }, "too long"},
		{"little memory", func(c *Config) { c.MemMiB = 8 }, "memory"},
		{"no vcpus", func(c *Config) { c.VCPUs = 0 }, "vcpus"},
		{"too many vcpus", func(c *Config) { c.VCPUs = 65 }, "vcpus"},
		{"no accel", func(c *Config) { c.Accel = "" }, "accel"},
		{"bad accel", func(c *Config) { c.Accel = "hvf" }, "accel"},
		{"initrd without kernel", func(c *Config) { c.Kernel = "" }, "without a kernel"},
		{"cmdline without kernel", func(c *Config) { c.Kernel, c.Initrd, c.Cmdline = "", "", "quiet" }, "without a kernel"},
		{"kernel without tsc", func(c *Config) { c.TSCkHz = 0 }, "tsc"},
		{"private without file", func(c *Config) { c.MemPrivate = true }, "memory file"},
		{"quote in cmdline", func(c *Config) { c.Cmdline = `a="b c"` }, "quotes"},
		{"relative kernel", func(c *Config) { c.Kernel = "vmlinux" }, "kernel"},
		{"relative initrd", func(c *Config) { c.Initrd = "initrd" }, "initrd"},
		{"relative disk", func(c *Config) { c.Disk = "root.qcow2" }, "disk"},
		{"relative memory file", func(c *Config) { c.MemPath = "ram" }, "memory file"},
		{"network none", func(c *Config) { c.Network = NetNone }, ""},
		{"network unplugged", func(c *Config) { c.Network = NetUnplugged }, ""},
		{"unknown network", func(c *Config) { c.Network = "user" }, "network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	c := Config{Dir: "/v/x"}
	for got, want := range map[string]string{
		c.QMPSocket():   "/v/x/qmp.sock",
		c.AgentSocket(): "/v/x/agent.sock",
		c.PIDFile():     "/v/x/qemu.pid",
		c.SerialLog():   "/v/x/serial.log",
		c.QEMULog():     "/v/x/qemu.log",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestCmdlineMatches(t *testing.T) {
	c := baseConfig()
	own := append([]string{"/usr/bin/qemu-system-x86_64"}, c.Args()...)
	other := baseConfig()
	other.Name, other.Dir = "vm2", "/v/vm2"
	sameNameOtherDir := baseConfig()
	sameNameOtherDir.Dir = "/elsewhere/vm1"
	tests := []struct {
		name string
		argv []string
		want bool
	}{
		{"own", own, true},
		{"other vm", append([]string{"qemu"}, other.Args()...), false},
		{"same name, other home", append([]string{"qemu"}, sameNameOtherDir.Args()...), false},
		{"unrelated process", []string{"/bin/sleep", "100"}, false},
		{"name only", []string{"qemu", "-name", "vm1"}, false},
		{"values shifted", []string{"qemu", "-name", "-pidfile", "vm1", "/v/vm1/qemu.pid"}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := cmdlineMatches(tt.argv, c); got != tt.want {
			t.Errorf("%s: cmdlineMatches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHasVirtFlag(t *testing.T) {
	tests := []struct {
		cpuinfo string
		want    bool
	}{
		{"processor\t: 0\nflags\t\t: fpu vme sse2 vmx ept\n", true},
		{"flags\t\t: fpu svm lm\n", true},
		{"flags\t\t: fpu vme tsc constant_tsc hypervisor\n", false},
		{"vmx flags\t: ept vpid\nflags\t\t: fpu\n", false}, // "vmx flags" is not "flags"
		{"", false},
	}
	for _, tt := range tests {
		if got := hasVirtFlag([]byte(tt.cpuinfo)); got != tt.want {
			t.Errorf("hasVirtFlag(%q) = %v, want %v", tt.cpuinfo, got, tt.want)
		}
	}
}

func TestCPUInfoKHz(t *testing.T) {
	tests := []struct {
		cpuinfo string
		want    int
	}{
		{"model name\t: X\ncpu MHz\t\t: 2596.130\ncache size\t: 1 KB\ncpu MHz\t\t: 1.000\n", 2596130},
		{"cpu MHz\t\t: 3000\n", 3000000},
		{"cpu MHz\t\t: 2095.0786\n", 2095079},
		{"cpu MHz\t\t: garbage\n", 0},
		{"model name\t: X\n", 0},
	}
	for _, tt := range tests {
		if got := cpuinfoKHz([]byte(tt.cpuinfo)); got != tt.want {
			t.Errorf("cpuinfoKHz(%q) = %d, want %d", tt.cpuinfo, got, tt.want)
		}
	}
}

func TestDetectAccel(t *testing.T) {
	if got := DetectAccel(); got != "kvm" && got != "tcg" {
		t.Errorf("DetectAccel() = %q", got)
	}
}

func TestBinaryMissing(t *testing.T) {
	UseTools(Tools{QEMU: "/nonexistent/qemu-system-x86_64"})
	if _, err := Binary(); !errors.Is(err, ErrQEMUMissing) || !strings.Contains(err.Error(), "VERS_QEMU") {
		t.Fatalf("Binary() = %v, want ErrQEMUMissing naming VERS_QEMU", err)
	}
	UseTools(Tools{})
	t.Setenv("PATH", t.TempDir())
	_, err := Binary()
	if !errors.Is(err, ErrQEMUMissing) || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("Binary() with empty PATH = %v, want ErrQEMUMissing naming the package", err)
	}
}

func TestWithHostDefaults(t *testing.T) {
	c, err := Config{Kernel: "/k", Accel: "tcg"}.WithHostDefaults()
	if err != nil {
		t.Skipf("host tsc frequency unknown here: %v", err)
	}
	if c.Accel != "tcg" || c.TSCkHz <= 0 {
		t.Fatalf("WithHostDefaults() = accel %q tsc %d", c.Accel, c.TSCkHz)
	}
	kept, _ := Config{Kernel: "/k", Accel: "kvm", TSCkHz: 1}.WithHostDefaults()
	if kept.Accel != "kvm" || kept.TSCkHz != 1 {
		t.Fatalf("WithHostDefaults overwrote set fields: %+v", kept)
	}
}

func TestImageFile(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/v/vm/disk.qcow2", "/v/vm/disk.qcow2"},
		{`json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/v/vm/disk.qcow2"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "/v/vm/disk-90d952c6.qcow2"}}`, "/v/vm/disk-90d952c6.qcow2"},
	}
	for _, tt := range tests {
		if got, err := imageFile(tt.in); err != nil || got != tt.want {
			t.Errorf("imageFile(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := imageFile("json:{oops"); err == nil {
		t.Error("bad json accepted")
	}
}
