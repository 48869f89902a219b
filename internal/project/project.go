// Package project reads and writes a vers project directory: vers.toml (the
// machine a `vers run` boots) and .vers/HEAD (the VM commands act on when
// none is named). It never talks to the daemon.
package project

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"vers/internal/errdefs"
)

const (
	ConfigFile = "vers.toml"
	StateDir   = ".vers"
)

// Config is vers.toml.
type Config struct {
	Machine struct {
		MemMiB int `toml:"mem_size_mib"`
		VCPUs  int `toml:"vcpu_count"`
		FsMiB  int `toml:"fs_size_vm_mib"`
	} `toml:"machine"`
	Rootfs struct {
		Name string `toml:"name"`
	} `toml:"rootfs"`
	Kernel struct {
		Name string `toml:"name"`
	} `toml:"kernel"`
	Network struct {
		// Mode is "isolated" (outbound connections only: no host loopback
		// service, no other guest) or "none" (no network device).
		Mode string `toml:"mode"`
	} `toml:"network"`
}

// Defaults is the configuration `vers init` writes.
func Defaults() Config {
	var c Config
	c.Machine.MemMiB, c.Machine.VCPUs, c.Machine.FsMiB = 512, 1, 1024
	c.Rootfs.Name, c.Kernel.Name = "default", "default.bin"
	c.Network.Mode = "isolated"
	return c
}

// Project is a directory holding vers.toml.
type Project struct {
	Dir    string
	Config Config
}

// ErrNoProject means no vers.toml was found from the working directory up.
var ErrNoProject = errors.New("no vers.toml here or in any parent directory; run `vers init` first")

// Find looks for vers.toml in dir and its parents.
func Find(dir string) (*Project, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ConfigFile)); err == nil {
			return Load(d)
		}
		if d == filepath.Dir(d) {
			return nil, fmt.Errorf("%w: %w", ErrNoProject, errdefs.ErrNotFound)
		}
	}
}

// Load reads dir/vers.toml. Fields it does not set keep their defaults;
// unknown keys are an error, since a typo would otherwise be ignored.
func Load(dir string) (*Project, error) {
	path := filepath.Join(dir, ConfigFile)
	cfg := Defaults()
	md, err := toml.DecodeFile(path, &cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", path, err, errdefs.ErrInvalid)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%s: unknown setting(s) %s: %w", path, strings.Join(keys, ", "), errdefs.ErrInvalid)
	}
	return &Project{Dir: dir, Config: cfg}, nil
}

// Init creates vers.toml (unless one exists) and .vers/ in dir. It reports
// whether vers.toml was written.
func Init(dir string) (bool, error) {
	if err := os.MkdirAll(filepath.Join(dir, StateDir), 0o755); err != nil {
		return false, err
	}
	path := filepath.Join(dir, ConfigFile)
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(Defaults()); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Write(buf.Bytes())
	return true, err
}

func (p *Project) headPath() string { return filepath.Join(p.Dir, StateDir, "HEAD") }

// Head returns the VM id HEAD names, or "" if none.
func (p *Project) Head() (string, error) {
	b, err := os.ReadFile(p.headPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// SetHead points HEAD at the VM id (atomically; "" clears it). It writes
// only inside the project directory: a .vers that is a link out of it is
// refused (versd moves HEADs for the web UI, as root).
func (p *Project) SetHead(id string) error {
	root, err := os.OpenRoot(p.Dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(StateDir, 0o755); err != nil {
		return err
	}
	head := filepath.Join(StateDir, "HEAD")
	if err := root.WriteFile(head+".tmp", []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	return root.Rename(head+".tmp", head)
}
