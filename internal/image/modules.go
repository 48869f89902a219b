package image

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// GuestModules are the kernel modules the guest needs beyond what Debian's
// kernel has built in: the microvm's virtio-mmio transport, its disk, the
// root filesystem, the agent's serial channel, the network and the RNG.
// crc32c_generic is listed because ext4 and jbd2 only name it as a soft
// dependency (metadata checksums need it at mount time).
var GuestModules = []string{
	"virtio_mmio",
	"virtio_blk",
	"crc32c_generic",
	"ext4",
	"virtio_console",
	"virtio_net",
	"virtio_rng",
}

// ModuleName normalises a module file or name the way the kernel does:
// no directory, no .ko(.xz|.zst|.gz) suffix, dashes as underscores.
func ModuleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModuleGraph maps a module name to the file (relative to the modules
// directory) that holds it and the names it depends on.
type ModuleGraph struct {
	Files map[string]string
	Deps  map[string][]string
}

// ParseModulesDep reads depmod's modules.dep ("kernel/a.ko: kernel/b.ko ...").
func ParseModulesDep(r io.Reader) (ModuleGraph, error) {
	g := ModuleGraph{Files: map[string]string{}, Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, ok := strings.Cut(line, ":")
		if !ok {
			return ModuleGraph{}, fmt.Errorf("modules.dep line %d: no colon: %w", n, ErrInvalid)
		}
		name := ModuleName(file)
		g.Files[name] = strings.TrimSpace(file)
		var names []string
		for _, d := range strings.Fields(deps) {
			names = append(names, ModuleName(d))
		}
		g.Deps[name] = names
	}
	return g, sc.Err()
}

// ParseBuiltin reads modules.builtin: the modules compiled into the kernel.
func ParseBuiltin(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out[ModuleName(line)] = true
		}
	}
	return out, sc.Err()
}

// ModInfo returns the key=value pairs of a module's .modinfo section (the
// same data `modinfo` prints). Debian's package ships no modules.dep (depmod
// runs at install time), so dependencies are read from here.
func ModInfo(ko []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("module is not an ELF file: %w", ErrInvalid)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module has no .modinfo section: %w", ErrInvalid)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

// ModInfoDeps returns the "depends=" list of a module's modinfo.
func ModInfoDeps(info map[string][]string) []string {
	var deps []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, ModuleName(d))
			}
		}
	}
	return deps
}

// LoadOrder returns the modules to load for want, dependencies first, each
// once, skipping built-in ones. The order is deterministic: wanted modules in
// the order given, each preceded by its dependencies in sorted order.
func LoadOrder(g ModuleGraph, builtin map[string]bool, want []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(name string, from []string) error
	visit = func(name string, from []string) error {
		name = ModuleName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle %s -> %s: %w", strings.Join(from, " -> "), name, ErrInvalid)
		case 2:
			return nil
		}
		if builtin[name] {
			state[name] = 2
			return nil
		}
		if _, ok := g.Files[name]; !ok {
			if len(from) == 0 {
				return fmt.Errorf("module %s is neither built in nor shipped: %w", name, ErrInvalid)
			}
			return fmt.Errorf("module %s (needed by %s) is neither built in nor shipped: %w", name, from[len(from)-1], ErrInvalid)
		}
		state[name] = 1
		deps := append([]string(nil), g.Deps[name]...)
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, append(from, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
