// Package image builds and caches the kernels and root filesystems that vers
// boots ("default.bin" and "default") from Debian packages on the host.
//
// Every build goes into a temporary directory inside the image directory and
// is installed by renames, under a per-image file lock, so an interrupted or
// concurrent build never leaves a half image. A finished build is never
// modified or deleted in place: VM disks are overlays on top of it, so a
// rebuild installs a new directory and repoints the name. This package must
// never install anything on the host or touch files outside its directory.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind says what an image is for.
type Kind string

const (
	KindKernel Kind = "kernel"
	KindRootfs Kind = "rootfs"
)

var (
	ErrUnknown     = errors.New("unknown image")
	ErrNotBuilt    = errors.New("image not built")
	ErrInvalid     = errors.New("invalid")
	ErrMissingTool = errors.New("missing host tool")
)

// Info describes one built image.
type Info struct {
	Name          string    `json:"name"`
	Kind          Kind      `json:"kind"`
	Path          string    `json:"path"`             // kernel: the vmlinux; rootfs: the ext4 file
	Initrd        string    `json:"initrd,omitempty"` // kernel only: initramfs.cpio
	SizeMiB       int       `json:"size_mib"`         // rootfs: filesystem size; kernel: vmlinux size
	Recipe        string    `json:"recipe"`           // recipe hash
	Built         time.Time `json:"built"`
	KernelVersion string    `json:"kernel_version,omitempty"`
}

// State is whether an image is usable as it stands.
type State string

const (
	StateBuilt   State = "built"   // built from the current recipe
	StateStale   State = "stale"   // built, but the recipe or the agent changed since
	StateMissing State = "missing" // never built
)

// Status is one line of List.
type Status struct {
	Name  string `json:"name"`
	Kind  Kind   `json:"kind"`
	State State  `json:"state"`
	Info  Info   `json:"info"` // zero when missing
}

// Store keeps the images of one image directory.
//
// Layout of dir:
//
//	<name>                  symlink to builds/<build> (the current build)
//	builds/<name>-<hash>-<time>/  one finished build: image files + info.json
//	cache/                  intermediate results (the debootstrap tree)
//	tmp/<name>-*            builds in progress; stale ones are removed
//	locks/<name>.lock       flock held while building <name>
//	logs/<name>.log         output of the last build's external commands
type Store struct {
	dir     string
	agent   string
	recipes map[string]*recipe
	order   []string
	mirror  string

	mu       sync.Mutex
	agentKey string // path, size, mtime of the last hashed agent
	agentSum string
}

// New returns a store for the images in dir, built with the vers-agent
// binary at agentPath. Nothing is read or created until it is used.
func New(dir, agentPath string) *Store {
	s := &Store{dir: dir, agent: agentPath, recipes: map[string]*recipe{}}
	s.mirror = debianMirror
	s.add(kernelRecipe())
	s.add(rootfsRecipe())
	return s
}

// UseMirror makes builds download from the Debian mirror at url ("" keeps
// the default). Call it before the first build.
func (s *Store) UseMirror(url string) {
	if url != "" {
		s.mirror = url
	}
}

func (s *Store) add(r *recipe) {
	s.recipes[r.name] = r
	s.order = append(s.order, r.name)
}

// Names lists the images this store knows how to build.
func (s *Store) Names() []string { return append([]string(nil), s.order...) }

func (s *Store) recipe(name string) (*recipe, error) {
	r, ok := s.recipes[name]
	if !ok {
		return nil, fmt.Errorf("image %q: %w (known: %s)", name, ErrUnknown, strings.Join(s.order, ", "))
	}
	return r, nil
}

// metadata is info.json inside a build directory. Paths are relative to it.
type metadata struct {
	Info
	AgentSHA256   string   `json:"agent_sha256"`
	KernelPackage string   `json:"kernel_package,omitempty"`
	Modules       []string `json:"modules,omitempty"`
}

const infoFile = "info.json"

// Get returns the current build of name. It fails with ErrNotBuilt when the
// image is missing or was built from another recipe or agent.
func (s *Store) Get(name string) (Info, error) {
	r, err := s.recipe(name)
	if err != nil {
		return Info{}, err
	}
	hash, err := s.recipeHash(r)
	if err != nil {
		return Info{}, err
	}
	info, err := s.current(name)
	if err != nil {
		return Info{}, err
	}
	if info.Recipe != hash {
		return Info{}, fmt.Errorf("image %s is stale (its recipe or the agent changed); rebuild it: %w", name, ErrNotBuilt)
	}
	return info, nil
}

// current reads the build the name points to, whatever its recipe.
func (s *Store) current(name string) (Info, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(s.dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Info{}, fmt.Errorf("image %s: %w", name, ErrNotBuilt)
		}
		return Info{}, fmt.Errorf("image %s: %w", name, err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Info{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	if err != nil {
		return Info{}, fmt.Errorf("image %s: no metadata (%v): %w", name, err, ErrNotBuilt)
	}
	var m metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return Info{}, fmt.Errorf("image %s: bad metadata (%v): %w", name, err, ErrNotBuilt)
	}
	info := m.Info
	info.Path = filepath.Join(dir, info.Path)
	if info.Initrd != "" {
		info.Initrd = filepath.Join(dir, info.Initrd)
	}
	for _, p := range []string{info.Path, info.Initrd} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return Info{}, fmt.Errorf("image %s: %v: %w", name, err, ErrNotBuilt)
		}
	}
	return info, nil
}

// Ensure returns the current build of name, building it first if needed.
func (s *Store) Ensure(ctx context.Context, name string, progress io.Writer) (Info, error) {
	info, err := s.Get(name)
	if err == nil || !errors.Is(err, ErrNotBuilt) {
		return info, err
	}
	return s.Build(ctx, name, false, progress)
}

// List reports every known image, built or not.
func (s *Store) List() ([]Status, error) {
	var out []Status
	for _, name := range s.order {
		r := s.recipes[name]
		st := Status{Name: name, Kind: r.kind, State: StateMissing}
		info, err := s.current(name)
		switch {
		case err == nil:
			st.Info = info
			hash, err := s.recipeHash(r)
			if err != nil {
				return nil, err
			}
			st.State = StateStale
			if info.Recipe == hash {
				st.State = StateBuilt
			}
		case !errors.Is(err, ErrNotBuilt):
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// recipeHash is the cache key of a build: the recipe's own description plus
// the agent binary it embeds.
func (s *Store) recipeHash(r *recipe) (string, error) {
	sum, err := s.agentSHA256()
	if err != nil {
		return "", err
	}
	return recipeHash(r.spec, sum), nil
}

func recipeHash(spec, agentSum string) string {
	h := sha256.New()
	io.WriteString(h, spec)
	io.WriteString(h, "\nagent-sha256="+agentSum+"\n")
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// agentSHA256 hashes the agent binary, remembering the result while the
// file's size and modification time stay the same.
func (s *Store) agentSHA256() (string, error) {
	fi, err := os.Stat(s.agent)
	if err != nil {
		return "", fmt.Errorf("vers-agent binary: %w: %w", ErrInvalid, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("vers-agent binary %s is not a regular file: %w", s.agent, ErrInvalid)
	}
	key := fmt.Sprintf("%s|%d|%d", s.agent, fi.Size(), fi.ModTime().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == s.agentKey {
		return s.agentSum, nil
	}
	f, err := os.Open(s.agent)
	if err != nil {
		return "", fmt.Errorf("vers-agent binary: %w: %w", ErrInvalid, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read vers-agent binary: %w", err)
	}
	s.agentKey, s.agentSum = key, hex.EncodeToString(h.Sum(nil))
	return s.agentSum, nil
}

// builds returns the build directories of name, oldest first.
func (s *Store) builds(name string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "builds"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && buildOf(e.Name()) == name {
			out = append(out, filepath.Join(s.dir, "builds", e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// buildOf returns the image name of a build directory name
// "<name>-<hash>-<time>".
func buildOf(dir string) string {
	parts := strings.Split(dir, "-")
	if len(parts) < 3 {
		return ""
	}
	return strings.Join(parts[:len(parts)-2], "-")
}
