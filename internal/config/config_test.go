package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vers/internal/errdefs"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestForDaemonDefaults(t *testing.T) {
	d, err := ForDaemon(env(map[string]string{"VERS_AGENT": "/a/vers-agent"}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Layout.Home != "/var/lib/vers" || d.Layout.ImageDir != "/var/lib/vers/images" || d.RAMDir != "/dev/shm/vers" ||
		d.RAMPoolDir != "/run/vers/pool" || d.Accel != "" || d.BootTimeout != 90*time.Second || d.Agent != "/a/vers-agent" || d.Debug {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestForDaemonSettings(t *testing.T) {
	d, err := ForDaemon(env(map[string]string{
		"VERS_HOME": "/h", "VERS_RAM_DIR": "/r", "VERS_ACCEL": "tcg", "VERS_BOOT_TIMEOUT": "5m",
		"VERS_FAILPOINTS": "a, b,", "VERS_DEBUG": "1", "VERS_QEMU": "/q", "VERS_AGENT": "/x",
		"VERS_EXEC_ASLR": "on",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Layout.ImageDir != "/h/images" || d.RAMDir != "/r" || d.RAMPoolDir != "" || d.Accel != "tcg" ||
		d.BootTimeout != 5*time.Minute || strings.Join(d.Failpoints, "|") != "a|b" || !d.Debug || d.QEMU != "/q" ||
		d.ExecASLR != "on" {
		t.Fatalf("settings: %+v", d)
	}
	if d, _ := ForDaemon(env(map[string]string{"VERS_RAM_POOL": "off", "VERS_AGENT": "/x"})); d.RAMPoolDir != "" || d.RAMDir != "/dev/shm/vers" {
		t.Fatalf("VERS_RAM_POOL=off: %+v", d)
	}
}

func TestForDaemonRefusesBadValues(t *testing.T) {
	for k, v := range map[string]string{"VERS_ACCEL": "hvf", "VERS_BOOT_TIMEOUT": "soon", "VERS_RAM_POOL": "maybe", "VERS_EXEC_ASLR": "no"} {
		_, err := ForDaemon(env(map[string]string{k: v, "VERS_AGENT": "/x"}))
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

func TestParseListen(t *testing.T) {
	good := []struct {
		in, addr string
		loopback bool
	}{
		{"", "", false},
		{"127.0.0.1:7777", "127.0.0.1:7777", true},
		{"localhost:7777", "127.0.0.1:7777", true},
		{"127.0.0.2:80", "127.0.0.2:80", true},
		{"[::1]:7777", "[::1]:7777", true},
		{"0.0.0.0:7777", "0.0.0.0:7777", false},
		{"192.168.1.5:7777", "192.168.1.5:7777", false},
	}
	for _, tt := range good {
		l, err := ParseListen(tt.in)
		if err != nil || l.Addr != tt.addr || l.Loopback != tt.loopback {
			t.Errorf("ParseListen(%q) = %+v, %v; want %s loopback=%v", tt.in, l, err, tt.addr, tt.loopback)
		}
	}
	bad := map[string]string{
		"127.0.0.1":        "give an address and a port",
		"127.0.0.1:":       "the port must be a number",
		"127.0.0.1:0":      "the port must be a number",
		"127.0.0.1:99999":  "the port must be a number",
		"127.0.0.1:http":   "the port must be a number",
		":7777":            "give the address to bind",
		"example.com:7777": "is not an IP address",
		"[fe80::1%eth0]:1": "is not an IP address",
	}
	for in, want := range bad {
		_, err := ParseListen(in)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseListen(%q) = %v; want an invalid error saying %q", in, err, want)
		}
	}
}

func TestForDaemonListen(t *testing.T) {
	d, err := ForDaemon(env(map[string]string{"VERS_LISTEN": "127.0.0.1:7777", "VERS_AGENT": "/x"}))
	if err != nil || d.Listen.Addr != "127.0.0.1:7777" || !d.Listen.Loopback {
		t.Fatalf("VERS_LISTEN: %+v, %v", d.Listen, err)
	}
	_, err = ForDaemon(env(map[string]string{"VERS_LISTEN": "7777", "VERS_AGENT": "/x"}))
	if err == nil || !strings.HasPrefix(err.Error(), `VERS_LISTEN="7777": give an address and a port`) {
		t.Fatalf("VERS_LISTEN=7777: %v", err)
	}
}

func TestForCLIRemote(t *testing.T) {
	c := ForCLI(env(map[string]string{"VERS_URL": "http://127.0.0.1:7777", "VERS_TOKEN": "t"}))
	if c.URL != "http://127.0.0.1:7777" || c.Token != "t" {
		t.Fatalf("%+v", c)
	}
}
