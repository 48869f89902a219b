// Package config is the one place vers reads its settings from the
// environment (the README's table of VERS_* variables). cmd/versd and
// cmd/vers read them once, at start, into these structs and pass the
// values down; no other package reads the environment for a setting.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vers/internal/errdefs"
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
	// ExecASLR is VERS_EXEC_ASLR: "on" or "off" for address-space
	// randomization of the programs vers starts in guests, "" to leave it
	// to the accelerator (off under TCG, where it makes every process start
	// ~4x slower; on under KVM).
	ExecASLR string
	// Debug is VERS_DEBUG: debug lines in versd.log.
	Debug bool
	// Failpoints is VERS_FAILPOINTS (tests only, see internal/fault).
	Failpoints []string
	// Listen is VERS_LISTEN (versd's --listen takes its place): the API
	// over TCP too, with a bearer token; the zero value serves the unix
	// socket only.
	Listen Listen
}

// Listen is a TCP address versd serves the API on, besides its socket.
type Listen struct {
	Addr string // host:port, the host an IP address; "" for none
	// Loopback is false for an address the network can reach, which versd
	// binds only because it was written out, and warns about.
	Loopback bool
}

// CLI is the vers command's configuration: where its daemon is (the
// daemon owns everything else, images included).
type CLI struct {
	Layout paths.Layout
	// URL is VERS_URL: a versd that serves the API over TCP
	// (http://127.0.0.1:7777), used instead of this host's socket; the CLI
	// never starts that one. Token is VERS_TOKEN, the bearer token it takes.
	URL, Token string
	// MCPToken is VERS_MCP_TOKEN: the bearer token `vers mcp serve --http`
	// requires, instead of the one in its token file.
	MCPToken string
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
func ForCLI(getenv Getenv) CLI {
	return CLI{Layout: Layout(getenv), URL: getenv("VERS_URL"), Token: getenv("VERS_TOKEN"), MCPToken: getenv("VERS_MCP_TOKEN")}
}

// ParseListen reads a TCP address to serve the API on: an IP address and a
// port. "localhost" is 127.0.0.1; other host names are refused, since what
// they resolve to can change. An address the network can reach is taken
// only written out (0.0.0.0:7777, never :7777).
func ParseListen(v string) (Listen, error) {
	if v == "" {
		return Listen{}, nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return Listen{}, fmt.Errorf("%q: give an address and a port, such as 127.0.0.1:7777: %w", v, errdefs.ErrInvalid)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Listen{}, fmt.Errorf("%q: the port must be a number from 1 to 65535, such as 127.0.0.1:7777: %w", v, errdefs.ErrInvalid)
	}
	switch host {
	case "":
		return Listen{}, fmt.Errorf("%q: give the address to bind: 127.0.0.1%s serves this host only (an address the network reaches must be written out, such as 0.0.0.0%s): %w",
			v, v, v, errdefs.ErrInvalid)
	case "localhost":
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return Listen{}, fmt.Errorf("%q: %q is not an IP address; give one, such as 127.0.0.1:%s: %w", v, host, port, errdefs.ErrInvalid)
	}
	return Listen{Addr: net.JoinHostPort(ip.String(), port), Loopback: ip.IsLoopback()}, nil
}

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
	switch v := getenv("VERS_EXEC_ASLR"); v {
	case "", "on", "off":
		d.ExecASLR = v
	default:
		return d, fmt.Errorf("VERS_EXEC_ASLR=%q: use on or off (or leave it unset: off under TCG, on under KVM)", v)
	}
	if v := getenv("VERS_BOOT_TIMEOUT"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return d, fmt.Errorf("VERS_BOOT_TIMEOUT=%q: use a duration such as 90s", v)
		}
		d.BootTimeout = t
	}
	listen, err := ParseListen(getenv("VERS_LISTEN"))
	if err != nil {
		return d, fmt.Errorf("VERS_LISTEN=%s", errdefs.Message(err))
	}
	d.Listen = listen
	for _, p := range strings.Split(getenv("VERS_FAILPOINTS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			d.Failpoints = append(d.Failpoints, p)
		}
	}
	return d, nil
}
