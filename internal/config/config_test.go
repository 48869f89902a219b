package config

import (
	"strings"
	"testing"
	"time"
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
	}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Layout.ImageDir != "/h/images" || d.RAMDir != "/r" || d.RAMPoolDir != "" || d.Accel != "tcg" ||
		d.BootTimeout != 5*time.Minute || strings.Join(d.Failpoints, "|") != "a|b" || !d.Debug || d.QEMU != "/q" {
		t.Fatalf("settings: %+v", d)
	}
	if d, _ := ForDaemon(env(map[string]string{"VERS_RAM_POOL": "off", "VERS_AGENT": "/x"})); d.RAMPoolDir != "" || d.RAMDir != "/dev/shm/vers" {
		t.Fatalf("VERS_RAM_POOL=off: %+v", d)
	}
}

func TestForDaemonRefusesBadValues(t *testing.T) {
	for k, v := range map[string]string{"VERS_ACCEL": "hvf", "VERS_BOOT_TIMEOUT": "soon", "VERS_RAM_POOL": "maybe"} {
		_, err := ForDaemon(env(map[string]string{k: v, "VERS_AGENT": "/x"}))
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}
