package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	kernelMetaPackage = "linux-image-amd64"
	kernelFile        = "vmlinux"
	initrdFile        = "initramfs.cpio"
	loadOrderFile     = "lib/modules/load-order"
	// initramfsLayout is bumped whenever the initramfs layout changes.
	initramfsLayout = 1
)

func kernelRecipe() *recipe {
	spec := fmt.Sprintf("kind=kernel\npackage=%s\nboot=pvh-vmlinux\ninitramfs-layout=%d\nmodules=%s\n",
		kernelMetaPackage, initramfsLayout, strings.Join(GuestModules, ","))
	return &recipe{
		name:  "default.bin",
		kind:  KindKernel,
		spec:  spec,
		tools: [][2]string{{"apt-get", "apt"}, {"dpkg-deb", "dpkg"}, {"xz", "xz-utils"}, {"cp", "coreutils"}},
		steps: []step{
			{"resolve " + kernelMetaPackage, 2 * time.Second, resolveKernel},
			{"download and unpack the kernel package", 5 * time.Second, unpackKernel},
			{"extract the PVH vmlinux and the guest's modules", 2 * time.Second, extractKernel},
			{"write the initramfs", time.Second, writeInitramfs},
		},
	}
}

// kernelCache is what is kept of one kernel package: the extracted vmlinux
// and the guest's modules, decompressed. With it a new agent binary only
// costs the initramfs step.
type kernelCache struct {
	Package       string   `json:"package"`
	Version       string   `json:"version"`
	KernelVersion string   `json:"kernel_version"`
	Modules       []string `json:"modules"` // load order
}

const kernelCacheFile = "kernel.json"

// kernelCacheDir names the cache of one kernel package version for the
// current recipe (the module list is part of it).
func (b *build) kernelCacheDir(pkg, version string) string {
	key := recipeHash(b.r.spec, pkg+"="+version)[:12]
	return filepath.Join(b.s.dir, "cache", fmt.Sprintf("%s-%s_%s-%s", b.r.name, pkg, version, key))
}

func (b *build) useKernelCache(pkg, version string) bool {
	dir := b.kernelCacheDir(pkg, version)
	if _, err := os.Stat(filepath.Join(dir, kernelCacheFile)); err != nil {
		return false
	}
	b.kcache, b.kcached = dir, true
	b.say("kernel %s %s cached in %s", pkg, version, dir)
	return true
}

// resolveKernel learns which versioned package linux-image-amd64 stands
// for, from the meta package itself, without installing anything.
func resolveKernel(ctx context.Context, b *build) error {
	dl := filepath.Join(b.tmp, "dl")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	if err := b.aptDownload(ctx, dl, kernelMetaPackage); err != nil {
		return err
	}
	meta, err := findOne(dl, kernelMetaPackage+"_*.deb")
	if err != nil {
		return err
	}
	deps, err := b.output(ctx, "dpkg-deb", "dpkg", "-f", meta, "Depends")
	if err != nil {
		return err
	}
	pkg, version := versionedKernel(string(deps))
	if pkg == "" {
		return fmt.Errorf("%s depends on no linux-image package (%q): %w", kernelMetaPackage, strings.TrimSpace(string(deps)), ErrInvalid)
	}
	b.kpkg, b.kversion = pkg, version
	b.meta.KernelPackage = strings.TrimSpace(pkg + " " + version)
	b.say("kernel package: %s", b.meta.KernelPackage)
	if version != "" {
		b.useKernelCache(pkg, version)
	}
	return nil
}

// versionedKernel picks the linux-image-* package, and its version when
// pinned, from a Depends field such as
// "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
func versionedKernel(depends string) (pkg, version string) {
	for _, alt := range strings.FieldsFunc(depends, func(r rune) bool { return r == ',' || r == '|' }) {
		f := strings.Fields(alt)
		if len(f) == 0 || !strings.HasPrefix(f[0], "linux-image-") {
			continue
		}
		if len(f) == 3 && f[1] == "(=" && strings.HasSuffix(f[2], ")") {
			version = strings.TrimSuffix(f[2], ")")
		}
		return f[0], version
	}
	return "", ""
}

func (b *build) aptDownload(ctx context.Context, dir, pkg string) error {
	args := []string{"download"}
	// apt drops to the _apt user for downloads, which cannot write into a
	// root-owned private directory; root may download as itself.
	if os.Geteuid() == 0 {
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	args = append(args, pkg)
	if err := b.runIn(ctx, dir, "apt-get", "apt", args...); err != nil {
		return fmt.Errorf("%w\n(if apt cannot locate the package, run apt-get update on the host)", err)
	}
	return nil
}

func unpackKernel(ctx context.Context, b *build) error {
	if b.kcached {
		b.say("kernel package cached; nothing to download")
		return nil
	}
	dl := filepath.Join(b.tmp, "dl")
	if err := b.aptDownload(ctx, dl, b.kpkg); err != nil {
		return err
	}
	deb, err := findOne(dl, b.kpkg+"_*.deb")
	if err != nil {
		return err
	}
	if b.kversion == "" {
		ver, err := b.output(ctx, "dpkg-deb", "dpkg", "-f", deb, "Version")
		if err != nil {
			return err
		}
		b.kversion = strings.TrimSpace(string(ver))
		b.meta.KernelPackage = b.kpkg + " " + b.kversion
		if b.useKernelCache(b.kpkg, b.kversion) {
			return nil
		}
	}
	if err := b.run(ctx, nil, "dpkg-deb", "dpkg", "-x", deb, filepath.Join(b.tmp, "pkg")); err != nil {
		return err
	}
	return os.RemoveAll(dl)
}

// extractKernel fills the kernel cache from the unpacked package.
func extractKernel(ctx context.Context, b *build) error {
	if b.kcached {
		return nil
	}
	vmlinuz, err := findOne(filepath.Join(b.tmp, "pkg", "boot"), "vmlinuz-*")
	if err != nil {
		return err
	}
	kc := kernelCache{Package: b.kpkg, Version: b.kversion,
		KernelVersion: strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")}
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	elfData, codec, err := ExtractVmlinux(ctx, data)
	if err != nil {
		return err
	}
	if _, err := PVHEntry(bytes.NewReader(elfData)); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(vmlinuz), err)
	}
	b.say("vmlinux %s: %d MiB, was %s-compressed", kc.KernelVersion, len(elfData)>>20, codec)

	dir := filepath.Join(b.tmp, "kernel")
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dir, kernelFile), elfData, 0o644); err != nil {
		return err
	}
	modDir := filepath.Join(b.tmp, "pkg", "lib", "modules", kc.KernelVersion)
	g, builtin, err := moduleGraph(modDir, GuestModules)
	if err != nil {
		return err
	}
	if kc.Modules, err = LoadOrder(g, builtin, GuestModules); err != nil {
		return err
	}
	for _, name := range kc.Modules {
		raw, err := os.ReadFile(filepath.Join(modDir, g.Files[name]))
		if err != nil {
			return err
		}
		ko, err := decompressModule(ctx, g.Files[name], raw)
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(dir, "modules", name+".ko"), ko, 0o644); err != nil {
			return err
		}
	}
	j, _ := json.MarshalIndent(kc, "", "  ")
	if err := writeFileSync(filepath.Join(dir, kernelCacheFile), append(j, '\n'), 0o644); err != nil {
		return err
	}
	cache := b.kernelCacheDir(kc.Package, kc.Version)
	old, _ := filepath.Glob(filepath.Join(b.s.dir, "cache", b.r.name+"-*"))
	if err := os.Rename(dir, cache); err != nil {
		return fmt.Errorf("cache the kernel: %w", err)
	}
	for _, o := range old {
		removeTree(o)
	}
	b.kcache = cache
	return nil
}

// writeInitramfs packs /init (the agent), the guest's modules and their
// load order into an uncompressed newc cpio, next to the vmlinux.
func writeInitramfs(ctx context.Context, b *build) error {
	var kc kernelCache
	j, err := os.ReadFile(filepath.Join(b.kcache, kernelCacheFile))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(j, &kc); err != nil {
		return fmt.Errorf("kernel cache %s: %v: %w", b.kcache, err, ErrInvalid)
	}
	// Builds are never modified, so they can share the cached file.
	vmlinux := filepath.Join(b.out, kernelFile)
	if err := os.Link(filepath.Join(b.kcache, kernelFile), vmlinux); err != nil {
		if err := b.run(ctx, nil, "cp", "coreutils", "--reflink=auto", filepath.Join(b.kcache, kernelFile), vmlinux); err != nil {
			return err
		}
	}
	fi, err := os.Stat(vmlinux)
	if err != nil {
		return err
	}
	b.meta.Path = kernelFile
	b.meta.SizeMiB = int((fi.Size() + 1<<20 - 1) >> 20)
	b.meta.KernelVersion = kc.KernelVersion
	b.meta.KernelPackage = kc.Package + " " + kc.Version

	agent, err := os.ReadFile(b.s.agent)
	if err != nil {
		return fmt.Errorf("vers-agent binary: %w", err)
	}
	f, err := os.Create(filepath.Join(b.out, initrdFile))
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := NewCPIO(bw, 0)
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "lib", "lib/modules"} {
		c.Dir(d, 0o755)
	}
	c.CharDev("dev/console", 0o600, 5, 1)
	c.File("init", 0o755, agent)
	var files []string
	for _, name := range kc.Modules {
		ko, err := os.ReadFile(filepath.Join(b.kcache, "modules", name+".ko"))
		if err != nil {
			return err
		}
		files = append(files, name+".ko")
		c.File("lib/modules/"+name+".ko", 0o644, ko)
	}
	c.File(loadOrderFile, 0o644, []byte(strings.Join(files, "\n")+"\n"))
	if err := c.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	b.meta.Initrd = initrdFile
	b.meta.Modules = kc.Modules
	b.say("initramfs: /init + %d modules: %s", len(kc.Modules), strings.Join(kc.Modules, " "))
	return f.Close()
}

// moduleGraph reads the dependency graph of a kernel's modules directory:
// from modules.dep when depmod has run, otherwise from the .modinfo of the
// modules reachable from want (Debian's package ships no modules.dep).
func moduleGraph(modDir string, want []string) (ModuleGraph, map[string]bool, error) {
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(modDir, "modules.builtin")); err == nil {
		builtin, err = ParseBuiltin(f)
		f.Close()
		if err != nil {
			return ModuleGraph{}, nil, err
		}
	}
	if f, err := os.Open(filepath.Join(modDir, "modules.dep")); err == nil {
		defer f.Close()
		g, err := ParseModulesDep(f)
		return g, builtin, err
	}
	g := ModuleGraph{Files: map[string]string{}, Deps: map[string][]string{}}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			rel, _ := filepath.Rel(modDir, p)
			g.Files[ModuleName(d.Name())] = rel
		}
		return nil
	})
	if err != nil {
		return ModuleGraph{}, nil, err
	}
	queue := append([]string(nil), want...)
	for len(queue) > 0 {
		name := ModuleName(queue[0])
		queue = queue[1:]
		if _, done := g.Deps[name]; done || builtin[name] {
			continue
		}
		file, ok := g.Files[name]
		if !ok {
			continue // LoadOrder reports it with its dependent
		}
		raw, err := os.ReadFile(filepath.Join(modDir, file))
		if err != nil {
			return ModuleGraph{}, nil, err
		}
		ko, err := decompressModule(context.Background(), file, raw)
		if err != nil {
			return ModuleGraph{}, nil, err
		}
		info, err := ModInfo(ko)
		if err != nil {
			return ModuleGraph{}, nil, fmt.Errorf("%s: %w", file, err)
		}
		deps := ModInfoDeps(info)
		g.Deps[name] = deps
		queue = append(queue, deps...)
	}
	return g, builtin, nil
}

// decompressModule returns a module's ELF bytes: the guest loads modules
// with finit_module and no decompressor, so they go in uncompressed.
func decompressModule(ctx context.Context, file string, raw []byte) ([]byte, error) {
	var want string
	switch {
	case strings.HasSuffix(file, ".ko"):
		return raw, nil
	case strings.HasSuffix(file, ".ko.xz"):
		want = "xz"
	case strings.HasSuffix(file, ".ko.zst"):
		want = "zstd"
	case strings.HasSuffix(file, ".ko.gz"):
		want = "gzip"
	default:
		return nil, fmt.Errorf("module %s: unknown compression: %w", file, ErrInvalid)
	}
	for _, c := range codecs {
		if c.name == want {
			out, err := decompress(ctx, c, raw)
			if err != nil {
				return nil, fmt.Errorf("module %s: %w", file, err)
			}
			if !bytes.HasPrefix(out, []byte("\x7fELF")) {
				return nil, fmt.Errorf("module %s: does not decompress to ELF: %w", file, ErrInvalid)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("module %s: no codec %s: %w", file, want, ErrInvalid)
}

// findOne returns the single file in dir matching pattern.
func findOne(dir, pattern string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("expected one %s in %s, found %d: %w", pattern, dir, len(m), ErrInvalid)
	}
	return m[0], nil
}
