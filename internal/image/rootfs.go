package image

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	debianMirror = "http://deb.debian.org/debian"
	debianSuite  = "bookworm"
	rootfsFile   = "rootfs.ext4"
	rootfsLabel  = "vers-root"
	// maxRootfsMiB keeps the base image small: a VM's disk is a qcow2
	// overlay of the user's size on top of it, which the agent grows the
	// filesystem into, so every size at least this big is valid.
	maxRootfsMiB = 512
)

// rootfsPackages are installed on top of debootstrap's minbase.
var rootfsPackages = []string{"bash", "sqlite3", "apt", "iproute2", "ca-certificates", "procps", "e2fsprogs", "less", "nano"}

// mkfsArgs: 4 KiB blocks even for a small image (mke2fs would pick 1 KiB
// below 512 MiB, which grows badly), an inode per 8 KiB, and inode tables
// and journal zeroed now so that no guest spends its first minutes in
// ext4lazyinit writing zeros into its overlay.
var mkfsArgs = []string{"-F", "-L", rootfsLabel, "-b", "4096", "-i", "8192", "-I", "256",
	"-E", "lazy_itable_init=0,lazy_journal_init=0"}

// Files the assembly writes into the guest. They are part of the recipe.
var guestFiles = []struct {
	path string
	mode os.FileMode
	data string
}{
	{"etc/resolv.conf", 0o644, "nameserver 10.0.2.3\n"},
	{"etc/hostname", 0o644, "vers\n"},
	{"etc/hosts", 0o644, "127.0.0.1\tlocalhost\n127.0.1.1\tvers\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"},
	{"etc/machine-id", 0o444, ""},
	{"etc/apt/sources.list.d/debian.sources", 0o644, `Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`},
	{"root/.bashrc", 0o644, `# ~/.bashrc for interactive root shells in a vers VM.
[ -z "$PS1" ] && return
HISTCONTROL=ignoredups:ignorespace
shopt -s checkwinsize histappend
PS1='\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
export LS_OPTIONS='--color=auto'
alias ls='ls $LS_OPTIONS'
alias ll='ls $LS_OPTIONS -l'
alias la='ls $LS_OPTIONS -la'
`},
}

// Removed from the guest to keep the image small; apt-get update refills
// the lists.
var guestCleanGlobs = []string{
	"etc/apt/sources.list",
	"var/lib/apt/lists/*_*",
	"var/cache/apt/*.bin",
	"var/cache/apt/archives/*.deb",
	"var/cache/apt/archives/partial/*",
	"var/log/bootstrap.log",
	"var/log/dpkg.log",
	"var/log/alternatives.log",
	"var/log/apt/*",
	"tmp/*",
	"var/tmp/*",
}

// debootstrapSpec determines the cached debootstrap tree. The mirror is not
// part of it: any Debian mirror gives the same packages.
func debootstrapSpec() string {
	return fmt.Sprintf("debootstrap suite=%s variant=minbase arch=amd64 include=%s\n",
		debianSuite, strings.Join(rootfsPackages, ","))
}

func rootfsRecipe() *recipe {
	var spec strings.Builder
	spec.WriteString("kind=rootfs\n" + debootstrapSpec())
	spec.WriteString("agent=/sbin/vers-agent init=/sbin/init->vers-agent\n")
	for _, f := range guestFiles {
		fmt.Fprintf(&spec, "file %s %o %q\n", f.path, f.mode, f.data)
	}
	fmt.Fprintf(&spec, "clean %s\n", strings.Join(guestCleanGlobs, " "))
	fmt.Fprintf(&spec, "mkfs %s max=%dMiB\n", strings.Join(mkfsArgs, " "), maxRootfsMiB)
	return &recipe{
		name:  "default",
		kind:  KindRootfs,
		spec:  spec.String(),
		tools: [][2]string{{"debootstrap", "debootstrap"}, {"cp", "coreutils"}, {"mkfs.ext4", "e2fsprogs"}, {"e2fsck", "e2fsprogs"}},
		steps: []step{
			{"debootstrap " + debianSuite + " minbase", 30 * time.Second, debootstrapBase},
			{"assemble the root filesystem", 2 * time.Second, assembleRootfs},
			{"mkfs.ext4", 2 * time.Second, mkfsRootfs},
		},
	}
}

func (b *build) baseCache() string {
	return filepath.Join(b.s.dir, "cache", fmt.Sprintf("%s-base-%s", b.r.name, recipeHash(debootstrapSpec(), "")[:12]))
}

// debootstrapBase runs debootstrap once per package recipe and caches the
// tree, so a new agent binary only repeats the cheap steps after it.
func debootstrapBase(ctx context.Context, b *build) error {
	cache := b.baseCache()
	if _, err := os.Stat(cache); err == nil {
		b.say("debootstrap tree cached in %s", cache)
		return nil
	}
	target := filepath.Join(b.tmp, "base")
	p := &debootstrapProgress{b: b, start: time.Now()}
	err := b.run(ctx, p.line, "debootstrap", "debootstrap",
		"--variant=minbase", "--arch=amd64", "--include="+strings.Join(rootfsPackages, ","),
		debianSuite, target, b.s.mirror)
	if err != nil {
		return err
	}
	// debootstrap unmounts what it mounted when it succeeds; make sure, as
	// the tree is about to be copied and cached.
	if mounts, _ := mountsUnder(target); len(mounts) > 0 {
		return fmt.Errorf("debootstrap left mounts behind: %s", strings.Join(mounts, " "))
	}
	if _, err := os.Stat(filepath.Join(target, "usr/share/keyrings/debian-archive-keyring.gpg")); err != nil {
		return fmt.Errorf("debootstrap tree has no Debian archive keyring; apt would not work: %w", ErrInvalid)
	}
	old, _ := filepath.Glob(filepath.Join(b.s.dir, "cache", b.r.name+"-base-*"))
	if err := os.Rename(target, cache); err != nil {
		return fmt.Errorf("cache debootstrap tree: %w", err)
	}
	for _, o := range old {
		removeTree(o)
	}
	return nil
}

// typicalPackages is how many packages the bookworm recipe downloads; it
// scales the download phase, whose total debootstrap does not print.
const typicalPackages = 115

// debootstrapProgress turns debootstrap's "I: ..." lines into a percentage.
type debootstrapProgress struct {
	b         *build
	start     time.Time
	total     int // packages retrieved
	phase     string
	n         int
	lastPct   int
	lastPhase string
}

func (p *debootstrapProgress) line(l string) {
	rest, ok := strings.CutPrefix(l, "I: ")
	if !ok {
		return
	}
	word, _, _ := strings.Cut(rest, " ")
	// Phases and their share of the total time, measured on bookworm.
	var lo, hi int
	switch word {
	case "Retrieving":
		p.total++
		p.setPhase("downloading")
		lo, hi = 0, 25
	case "Extracting":
		p.setPhase("extracting")
		lo, hi = 25, 40
	case "Unpacking":
		p.setPhase("unpacking")
		lo, hi = 40, 70
	case "Configuring":
		p.setPhase("configuring")
		lo, hi = 70, 100
	default:
		return
	}
	p.n++
	total := p.total
	if p.phase == "downloading" {
		total = typicalPackages
	}
	pct := lo + (hi-lo)*min(p.n, total)/max(total, 1)
	if p.phase != p.lastPhase || pct >= p.lastPct+10 {
		p.lastPhase, p.lastPct = p.phase, pct
		p.b.say("debootstrap: %s, %d%% (%s)", p.phase, pct, roundDur(time.Since(p.start)))
	}
}

func (p *debootstrapProgress) setPhase(ph string) {
	if p.phase != ph {
		p.phase, p.n = ph, 0
	}
}

// assembleRootfs copies the cached tree and installs the agent as init plus
// the guest's configuration.
func assembleRootfs(ctx context.Context, b *build) error {
	root := filepath.Join(b.tmp, "root")
	if err := b.run(ctx, nil, "cp", "coreutils", "-a", "--reflink=auto", b.baseCache(), root); err != nil {
		return err
	}
	agent, err := os.ReadFile(b.s.agent)
	if err != nil {
		return fmt.Errorf("vers-agent binary: %w", err)
	}
	return configureRoot(root, agent)
}

// configureRoot edits the tree at dir through os.Root, so that a symlink in
// the guest tree can never redirect a write onto the host.
func configureRoot(dir string, agent []byte) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, g := range guestCleanGlobs {
		m, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return err
		}
		for _, p := range m {
			rel, _ := filepath.Rel(dir, p)
			if err := r.RemoveAll(rel); err != nil {
				return fmt.Errorf("clean %s: %w", rel, err)
			}
		}
	}
	for _, d := range []string{"sbin", "etc/apt/sources.list.d", "root"} {
		if err := r.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := r.Chmod("root", 0o700); err != nil {
		return err
	}
	r.Remove("sbin/vers-agent")
	if err := r.WriteFile("sbin/vers-agent", agent, 0o755); err != nil {
		return fmt.Errorf("install agent: %w", err)
	}
	if err := r.Chmod("sbin/vers-agent", 0o755); err != nil {
		return err
	}
	r.Remove("sbin/init")
	if err := r.Symlink("vers-agent", "sbin/init"); err != nil {
		return fmt.Errorf("link /sbin/init: %w", err)
	}
	for _, f := range guestFiles {
		// Replace, never write through: debootstrap may leave symlinks here.
		if err := r.Remove(f.path); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := r.WriteFile(f.path, []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		if err := r.Chmod(f.path, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// mkfsRootfs makes the ext4 image, sized to the tree plus headroom.
func mkfsRootfs(ctx context.Context, b *build) error {
	root := filepath.Join(b.tmp, "root")
	used, err := treeSize(root)
	if err != nil {
		return err
	}
	size := rootfsSizeMiB(used)
	if size > maxRootfsMiB {
		b.say("warning: the tree needs %d MiB, more than the usual %d MiB", size, maxRootfsMiB)
	}
	img := filepath.Join(b.out, rootfsFile)
	args := append(append([]string{}, mkfsArgs...), "-d", root, img, fmt.Sprintf("%dM", size))
	if err := b.run(ctx, nil, "mkfs.ext4", "e2fsprogs", args...); err != nil {
		return err
	}
	if err := b.run(ctx, nil, "e2fsck", "e2fsprogs", "-fn", img); err != nil {
		return fmt.Errorf("check the new filesystem: %w", err)
	}
	b.meta.Path = rootfsFile
	b.meta.SizeMiB = size
	b.say("ext4 image: %d MiB filesystem, %d MiB of files", size, used>>20)
	return nil
}

// rootfsSizeMiB is the filesystem size for a tree of used bytes: the tree
// plus 10% for metadata, the journal (16 MiB) and inode tables, and 64 MiB
// free for the guest, in 16 MiB steps, at most maxRootfsMiB unless the tree
// really needs more.
func rootfsSizeMiB(used int64) int {
	const mib = 1 << 20
	need := used + used/10 + 64*mib
	size := int((need + 16*mib - 1) / (16 * mib) * 16)
	if size > maxRootfsMiB {
		min := int((used + used/10 + 24*mib + mib - 1) / mib)
		if min <= maxRootfsMiB {
			return maxRootfsMiB
		}
		return min
	}
	return size
}

// treeSize adds up a tree's files in 4 KiB blocks, plus a block for every
// directory and link.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		total += 4096
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += (fi.Size() + 4095) &^ 4095
		}
		return nil
	})
	return total, err
}
