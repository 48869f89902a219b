// Package config is the one place vers reads its settings from the
// environment (the README's table of VERS_* variables). cmd/versd and
// cmd/vers read them once, at start, into these structs and pass the
// values down; no other package reads the environment for a setting.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vers/internal/paths"
)

// Getenv reads one variable (os.Getenv, or a map in tests).
type Getenv func(string) string

// Daemon is versd's configuration.
type Daemon struct {
	Layout paths.Layout // VERS_HOME, VERS_IMAGE_DIR
	// Agent is the vers-agent binary images embed: VERS_AGENT, or the file
	// next to versd.
	Agent string
	// RAMDir holds guest RAM files (VERS_RAM_DIR, default /dev/shm/vers).
	RAMDir string
	// RAMPoolDir is where the in-memory filesystem mounted at RAMDir keeps
	// its image (internal/rampool), or "" when versd must not mount one:
	// VERS_RAM_POOL=off, or a RAM directory of one's own, used as it is.
	RAMPoolDir string
	// Accel is VERS_ACCEL ("kvm" or "tcg"), or "" to detect it.
	Accel string
	// QEMU and QEMUImg are VERS_QEMU and VERS_QEMU_IMG ("" finds them in PATH).
	QEMU, QEMUImg string
	// Mirror is VERS_DEBIAN_MIRROR ("" for the image store's default).
	Mirror string
	// BootTimeout is VERS_BOOT_TIMEOUT (default 90 s).
	BootTimeout time.Duration
	// Debug is VERS_DEBUG: debug lines in versd.log.
	Debug bool
	// Failpoints is VERS_FAILPOINTS (tests only, see internal/fault).
	Failpoints []string
}

// CLI is the vers command's configuration: where its daemon is (the
// daemon owns everything else, images included).
type CLI struct {
	Layout paths.Layout
}

const (
	defaultHome    = "/var/lib/vers"
	defaultRAMDir  = "/dev/shm/vers"
	defaultPoolDir = "/run/vers/pool"
	defaultBoot    = 90 * time.Second
)

// Layout is where an installation keeps its state.
func Layout(getenv Getenv) paths.Layout {
	home := getenv("VERS_HOME")
	if home == "" {
		home = defaultHome
	}
	images := getenv("VERS_IMAGE_DIR")
	if images == "" {
		images = filepath.Join(home, "images")
	}
	return paths.Layout{Home: home, ImageDir: images}
}

// ForCLI reads the CLI's configuration.
func ForCLI(getenv Getenv) CLI { return CLI{Layout: Layout(getenv)} }

// agent is VERS_AGENT, or vers-agent next to versd.
func agent(getenv Getenv) string {
	if p := getenv("VERS_AGENT"); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return "vers-agent"
	}
	return filepath.Join(filepath.Dir(exe), "vers-agent")
}

// ForDaemon reads versd's configuration; a value that cannot be read is an
// error that names the variable, rather than a default taken silently.
func ForDaemon(getenv Getenv) (Daemon, error) {
	d := Daemon{
		Layout: Layout(getenv), Agent: agent(getenv),
		RAMDir: getenv("VERS_RAM_DIR"), RAMPoolDir: defaultPoolDir,
		QEMU: getenv("VERS_QEMU"), QEMUImg: getenv("VERS_QEMU_IMG"), Mirror: getenv("VERS_DEBIAN_MIRROR"),
		BootTimeout: defaultBoot, Debug: getenv("VERS_DEBUG") != "",
	}
	if d.RAMDir != "" {
		d.RAMPoolDir = ""
	} else {
		d.RAMDir = defaultRAMDir
	}
	switch v := getenv("VERS_RAM_POOL"); v {
	case "", "on":
	case "off":
		d.RAMPoolDir = ""
	default:
		return d, fmt.Errorf("VERS_RAM_POOL=%q: use on or off", v)
	}
	switch v := getenv("VERS_ACCEL"); v {
	case "", "kvm", "tcg":
		d.Accel = v
	default:
		return d, fmt.Errorf("VERS_ACCEL=%q: use kvm or tcg (or leave it unset to detect)", v)
	}
	if v := getenv("VERS_BOOT_TIMEOUT"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return d, fmt.Errorf("VERS_BOOT_TIMEOUT=%q: use a duration such as 90s", v)
		}
		d.BootTimeout = t
	}
	for _, p := range strings.Split(getenv("VERS_FAILPOINTS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			d.Failpoints = append(d.Failpoints, p)
		}
	}
	return d, nil
}
